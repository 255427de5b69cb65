"""Benchmark-only WSGI app: the reference points the gateway's pixel path is measured against.

Served by bench/bench_gateway.py under the same WSGI server and worker count as the gateway
(``floor_app:make_app``, a factory; ``REDIS_URL`` in the environment):

* ``GET /hello.gif``: Flask answering the gateway's 43-byte GIF with the gateway's no-store
  headers, nothing else. The ceiling of Flask + the WSGI server on this machine.
* ``GET /floor.gif``: the least any consent-gated store can do per beacon: one pipelined
  round trip holding the subject's consent read (``HGETALL`` of its consent hash) and one
  stream append (``XADD``), then the GIF. The consent hash is named as the gateway names
  it (``gateway.storage.keys``); the subject id is taken from the ``_vid`` cookie without
  checking its signature, and nothing is decided from the consent read: this is a lower
  bound on the work, not a correct gateway.
* ``POST /floor/events``: the same floor for a ``{"events": [...]}`` body: decode it with
  msgspec, then one pipelined round trip holding the consent read and one ``XADD`` per
  event; answers 202 ``{"accepted": n, "stored": n}`` like the gateway.

Never deploy this: it stores whatever it is sent without checking anything.
"""

from __future__ import annotations

import os
import time
import uuid

import msgspec
import redis
from flask import Flask, Response, jsonify, request

from gateway.storage.keys import Keys
from gateway.web.collect import GIF, NO_STORE

FLOOR_STREAM = "bench:floor:{personalization:0}"
FLOOR_EVENTS_STREAM = "bench:floor:{events:0}"


def make_app() -> Flask:
    app = Flask(__name__)
    r = redis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)
    keys = Keys()  # the gateway's key names (default slot groups): the same consent hash

    def gif() -> Response:
        resp = Response(GIF, mimetype="image/gif")
        resp.headers["Cache-Control"] = NO_STORE
        resp.headers["Pragma"] = "no-cache"
        return resp

    @app.get("/hello.gif")
    def hello() -> Response:
        return gif()

    @app.get("/floor.gif")
    def floor() -> Response:
        sid = (request.cookies.get("_vid") or "").partition(".")[0]
        pipe = r.pipeline(transaction=False)
        pipe.hgetall(keys.consent(sid))
        pipe.xadd(
            FLOOR_STREAM,
            {
                "sid": sid,
                "event_id": uuid.uuid4().hex,
                "type": request.args.get("type", "page_view"),
                "ts": str(int(time.time() * 1000)),
                "url": request.args.get("url", ""),
            },
        )
        pipe.execute()
        return gif()

    @app.post("/floor/events")
    def floor_events() -> Response:
        sid = (request.cookies.get("_vid") or "").partition(".")[0]
        events = msgspec.json.decode(request.get_data(cache=False))["events"]
        pipe = r.pipeline(transaction=False)
        pipe.hgetall(keys.consent(sid))
        for e in events:
            fields = {"sid": sid}
            fields.update((k, v if isinstance(v, str) else str(v)) for k, v in e.items())
            pipe.xadd(FLOOR_EVENTS_STREAM, fields)
        pipe.execute()
        resp = jsonify({"accepted": len(events), "stored": len(events)})
        resp.status_code = 202
        return resp

    return app
