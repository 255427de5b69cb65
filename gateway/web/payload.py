"""Reading request bodies: content type, size and encoding, then the JSON (core.jsonbody).

Each failure is its own 4xx with a code that names it, raised before any storage is touched.
"""

from __future__ import annotations

from typing import Any

from flask import Request

from ..core.errors import (
    PayloadTooLarge,
    UnsupportedEncoding,
    UnsupportedMediaType,
    ValidationFailed,
)
from ..core.jsonbody import inflate, parse_json

JSON_TYPES = frozenset({"application/json", "text/plain"})


def read_body(request: Request, *, max_bytes: int) -> bytes:
    """The raw body of a JSON (or ``text/plain`` holding JSON) request within ``max_bytes``."""
    if request.mimetype not in JSON_TYPES:
        raise UnsupportedMediaType(
            f"content type {request.mimetype or '(none)'!r} is not accepted; "
            "send application/json or text/plain holding JSON",
        )
    charset = request.mimetype_params.get("charset", "utf-8").lower()
    if charset not in {"utf-8", "utf8"}:
        raise UnsupportedMediaType(f"charset {charset!r} is not accepted; send UTF-8")
    if request.content_length is not None and request.content_length > max_bytes:
        raise PayloadTooLarge(f"the body is larger than {max_bytes} bytes")
    request.max_content_length = max_bytes + 1
    data = request.get_data(cache=False)
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"the body is larger than {max_bytes} bytes")
    return data


def read_encoded_body(request: Request, *, max_bytes: int) -> bytes:
    """``read_body`` for clients that may gzip: ``max_bytes`` bounds the body as sent and inflated.

    Inflating stops one byte past the limit, so a decompression bomb costs the gateway
    ``max_bytes`` of memory and is refused with 413, never inflated in full.
    """
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in {"identity", "gzip", "x-gzip"}:
        raise UnsupportedEncoding(
            f"content encoding {encoding!r} is not accepted; send gzip or no encoding"
        )
    raw = read_body(request, max_bytes=max_bytes)
    return raw if encoding == "identity" else inflate(raw, max_bytes=max_bytes)


def read_json(request: Request, *, max_bytes: int, max_depth: int) -> Any:
    """The parsed JSON body of a request that passed every check."""
    return parse_json(read_body(request, max_bytes=max_bytes), max_depth=max_depth)


def read_object(request: Request, *, max_bytes: int, max_depth: int) -> dict[str, Any]:
    """``read_json`` for endpoints whose body is a JSON object: 400 for anything else."""
    body = read_json(request, max_bytes=max_bytes, max_depth=max_depth)
    if not isinstance(body, dict):
        raise ValidationFailed("the body must be an object")
    return body
