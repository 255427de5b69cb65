"""Who is calling, for Flask: the request's caller (``core/caller.py``) found once per
request, and the cookies that name a subject (``_vid``) and carry the consent hint."""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache

from flask import Flask, Request, Response, current_app, g, request
from werkzeug.http import dump_cookie

from ..core.caller import Caller, identify_from
from ..core.tokens import CONSENT_COOKIE, OPTOUT_COOKIE, SUBJECT_HEADER, VID_COOKIE, Tokens


def identify(request: Request, tokens: Tokens) -> Caller:
    return identify_from(
        tokens, request.headers.get(SUBJECT_HEADER), request.cookies.get(VID_COOKIE)
    )


@dataclass(frozen=True, slots=True)
class CookiePolicy:
    secure: bool
    max_age_s: int
    domain: str | None = None

    def subject_header(self, tokens: Tokens, sid: str) -> str:
        """The Set-Cookie value of ``_vid``; re-set on every answer, a fresh lifetime per visit.

        Rendered once a minute per subject: its Expires moves by the minute at most.
        """
        return self._subject_header(tokens, sid, int(time.time() // 60))

    @lru_cache(maxsize=4096)  # noqa: B019 - one policy per app, kept for the app's life
    def _subject_header(self, tokens: Tokens, sid: str, minute: int) -> str:
        return dump_cookie(
            VID_COOKIE,
            tokens.sign_subject(sid),
            max_age=self.max_age_s,
            secure=self.secure,
            httponly=True,
            samesite="Lax",
            domain=self.domain,
            path="/",
        )

    def set_consent(self, resp: Response, value: str) -> None:
        resp.headers.add("Set-Cookie", self.consent_header(value))

    def consent_header(self, value: str) -> str:
        return self._cookie(CONSENT_COOKIE, value, httponly=False)  # the SDK reads it

    def optout_header(self, value: str) -> str:
        return self._cookie(OPTOUT_COOKIE, value, httponly=True)

    def _cookie(self, name: str, value: str, *, httponly: bool) -> str:
        return dump_cookie(
            name,
            value,
            max_age=self.max_age_s,
            secure=self.secure,
            httponly=httponly,
            samesite="Lax",
            domain=self.domain,
            path="/",
        )

    def clear_subject(self, resp: Response) -> None:
        resp.delete_cookie(
            VID_COOKIE,
            domain=self.domain,
            path="/",
            secure=self.secure,
            httponly=True,
            samesite="Lax",
        )
        resp.delete_cookie(
            CONSENT_COOKIE, domain=self.domain, path="/", secure=self.secure, samesite="Lax"
        )


def caller() -> Caller:
    """The caller of the current request, identified once."""
    who: Caller | None = g.get("caller")
    if who is None:
        who = identify(request, current_app.extensions["gateway"].tokens)
        g.caller = who
    return who


def init_app(app: Flask) -> None:
    @app.after_request
    def _subject_cookie(resp: Response) -> Response:
        who: Caller | None = g.get("caller")
        if who is not None:
            svc = current_app.extensions["gateway"]
            value = subject_cookie(svc.cookies, svc.tokens, who)
            if value is not None:
                resp.headers.add("Set-Cookie", value)
        return resp


def subject_cookie(policy: CookiePolicy, tokens: Tokens, who: Caller) -> str | None:
    """(Re)set ``_vid``: a fresh lifetime on each visit, a new id in place of a forged one."""
    if who.via == "header":
        return None
    if who.forged and who.sid is None:
        who.ensure()
    return policy.subject_header(tokens, who.sid) if who.sid is not None else None
