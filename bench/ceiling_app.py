"""Benchmark-only WSGI app: the ceiling of the pixel's design, its store write and nothing else.

Served by bench/bench_gateway.py beside the gateway (``ceiling_app:make_app``, a factory; the
gateway's own environment). It is the real gateway with one more path in front:

* ``GET /ceiling.gif``: stores a copy of one real beacon's write (its keys and arguments,
  captured from the first beacon this process answered) through the gateway's own group
  commit (``storage/group.py``, the same lines, connection and ``lua/events.lua``), flagged
  as gateway-minted so that no copy is deduplicated, then answers the GIF. None of the
  beacon's own work (cookies, origin, consent hint, enrichment, splitting, packing, metrics)
  is done. The first such request of each process is answered as ``/p.gif`` (a real beacon,
  whose write is the one copied).

What the gateway's pixel could reach if all of its Python work cost nothing: the WSGI server,
the group commit's client side and Valkey's script. Never deploy this.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gateway.storage.group import FLAGS
from gateway.web.beacon import PATH as PIXEL
from gateway.web.collect import GIF, NO_STORE
from gateway.wsgi import make_app as gateway_app

PATH = "/ceiling.gif"
HEADERS = [
    ("Content-Type", "image/gif"),
    ("Content-Length", str(len(GIF))),
    ("Cache-Control", NO_STORE),
    ("Pragma", "no-cache"),
]


def make_app() -> Any:
    return wrap(gateway_app())


def wrap(app: Any) -> Any:
    """``app`` (the gateway's Flask application) with ``/ceiling.gif`` in front."""
    group = app.extensions["gateway"].store._group
    sample: list[tuple[list[str], list[Any]]] = []
    run = group.run

    def capture(keys: list[str], args: list[Any], minted: bool) -> Any:
        if not sample:
            copied = list(args)
            copied[FLAGS] = "m"  # minted: never deduplicated, never sent twice
            sample.append((list(keys), copied))
        return run(keys, args, minted)

    group.run = capture
    inner = app.wsgi_app

    def wsgi(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == PATH:
            if not sample:  # this process's first: a real beacon, whose write is copied
                environ["PATH_INFO"] = PIXEL
                return inner(environ, start_response)
            keys, args = sample[0]
            status, _ = run(keys, list(args), True)
            if status != "ok":
                raise RuntimeError(f"the copied write was not stored: {status}")
            start_response("200 OK", HEADERS)
            return [GIF]
        return inner(environ, start_response)

    app.wsgi_app = wsgi
    return app
