"""``GET /``: under ``--dev`` a short landing page (what this is, where to look); in
production nothing, a 404 like any other unknown path.

A production gateway runs on a host of its own (``t.example.com``) that people never open:
its API is for the SDKs and the site's servers (docs/protocol.md), its health and metrics for
the operator. A page or an index there would serve nobody but scanners, so there is none.
The landing page speaks Chinese, or English with ``?lang=en`` (as the demo does).
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, render_template, request

from ..core.errors import NotFound
from .services import services

bp = Blueprint("home", __name__)

# (path, what it is in Chinese, in English); the paths of the first two lists are served.
TRY = [
    (
        "/demo",
        "演示商城：同意横幅、SDK 发出的请求，以及网关实际保存的数据",
        "A demo shop: the consent banner, what the SDK sends and what the gateway keeps",
    ),
    (
        "/v1/subject",
        "网关为当前浏览器保存的全部数据",
        "Everything the gateway holds about this browser",
    ),
]
ENDPOINTS = [
    (
        "/v1/policy",
        "隐私政策的机器可读版本：各项用途、字段及保存期限",
        "The policy as JSON: its purposes, their fields and how long each is kept",
    ),
    (
        "/.well-known/jwks.json",
        "签署同意回执所用的公钥（JWKS）",
        "The public keys that sign consent receipts (JWKS)",
    ),
    (
        "/healthz",
        "运行状态：存储是否可用、同意记录是否已写入磁盘",
        "Health: whether the store answers, whether consent writes reach the disk",
    ),
    ("/metrics", "Prometheus 监控指标", "Prometheus metrics"),
]
DOCS = [
    ("README.md", "快速上手", "Getting started"),
    ("docs/protocol.md", "接口协议", "The HTTP API"),
    ("docs/configuration.md", "配置项与命令行", "Settings and the command line"),
    ("docs/privacy.md", "隐私：保存哪些数据、保存多久", "Privacy: what is kept, for how long"),
    ("sdk_js/README.md", "浏览器 SDK", "The browser SDK"),
    ("docs/sdk_py.md", "Python SDK（APP 与后端）", "The Python SDK (APP and backend)"),
]
WORDS = {
    "zh": {
        "title": "同意网关（开发模式）",
        "lead": "这是一个以用户同意为前提的数据收集网关：浏览器 SDK 和 APP 上报的事件，"
        "只会按访客同意的用途、依其同意时的政策版本保存，每一次选择都记入可验证的同意记录。",
        "try": "试一试",
        "endpoints": "接口",
        "docs": "文档（位于代码仓库中，网关本身不提供）",
        "policy": "隐私政策",
        "version": "当前政策版本：",
        "footer": "开发模式（--dev）：Cookie 不设 Secure 属性，仅适用于在本机通过 HTTP 访问。"
        "生产环境中没有此页面，访问根路径会返回 404。",
        "other": ("en", "English"),
    },
    "en": {
        "title": "Consent gateway (development)",
        "lead": "A consent-aware tracking gateway: events from the browser SDK and the APP are "
        "stored only for the purposes a visitor consented to, under the policy version they "
        "consented to, and every choice goes into a verifiable ledger.",
        "try": "Try it",
        "endpoints": "Endpoints",
        "docs": "Documentation (in the repository; the gateway does not serve it)",
        "policy": "Privacy policy",
        "version": "Current policy version: ",
        "footer": "Development mode (--dev): cookies without Secure, for plain HTTP on this "
        "machine. In production there is no page here: GET / answers 404.",
        "other": ("zh", "中文"),
    },
}


@bp.get("/")
def home() -> Response:
    if not current_app.config.get("DEV"):
        raise NotFound("nothing is served at /: the gateway's API is under /v1/")
    lang = "en" if request.args.get("lang") == "en" else "zh"
    i = 1 if lang == "zh" else 2
    svc = services()
    body = render_template(
        "home.html",
        lang=lang,
        words=WORDS[lang],
        suffix="?lang=en" if lang == "en" else "",
        sections=[
            (WORDS[lang]["try"], [(row[0], row[i]) for row in TRY], True),
            (WORDS[lang]["endpoints"], [(row[0], row[i]) for row in ENDPOINTS], True),
            (WORDS[lang]["docs"], [(row[0], row[i]) for row in DOCS], False),
        ],
        policy_url=svc.config.get("POLICY_URL"),
        version=svc.catalogue.current.version,
    )
    resp = Response(body, 200, mimetype="text/html")
    resp.headers["Cache-Control"] = "no-store"
    return resp
