"""JSON bodies: parsing once where JSON enters, for every endpoint that reads it.

Each failure is its own 4xx with a code that names it. JSON that parses but holds what no
endpoint can use is refused here too: an integer longer than Python's int-string limit, and a
string (key or value) holding a lone surrogate (which no UTF-8 store can hold). A gzip body is
inflated here, refused as soon as it grows past its limit.
"""

from __future__ import annotations

import json
import re
import sys
import zlib
from collections.abc import Iterable
from typing import Any

from .errors import (
    InflatedTooLarge,
    InvalidEncoding,
    InvalidJSON,
    InvalidString,
    NumberTooLarge,
    TooDeep,
)

# A lone surrogate can only arrive as a \u escape: the body was decoded as UTF-8 first, which
# refuses encoded surrogates. Bodies without an escape of D800-DFFF skip the walk below.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")


def _reject_constant(name: str) -> Any:
    raise InvalidJSON(f"{name} is not a JSON number")


def inflate(raw: bytes, *, max_bytes: int) -> bytes:
    """A gzip body inflated, refused as soon as it would exceed ``max_bytes``."""
    d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(raw, max_bytes + 1)
    except zlib.error as e:
        raise InvalidEncoding(f"the body is not valid gzip: {e}") from e
    if len(out) > max_bytes:
        raise InflatedTooLarge(
            f"the body inflates to more than {max_bytes} bytes; nothing was stored"
        )
    if not d.eof:
        raise InvalidEncoding("the gzip body is truncated")
    if d.unused_data:
        raise InvalidEncoding("data follows the end of the gzip body")
    return out


def parse_json(raw: bytes, *, max_depth: int) -> Any:
    if not raw.strip():
        raise InvalidJSON("the body is empty")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidEncoding(f"the body is not valid UTF-8 (byte {e.start})") from e
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        raise InvalidJSON(
            f"the body is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}"
        ) from e
    except RecursionError as e:
        raise TooDeep(f"JSON nested deeper than {max_depth} levels") from e
    except ValueError as e:  # int() past sys.get_int_max_str_digits(), the only other one
        digits = sys.get_int_max_str_digits()
        raise NumberTooLarge(
            f"a number in the body has more than {digits} digits; no field takes one that long"
        ) from e
    if depth_exceeds(data, max_depth):
        raise TooDeep(f"JSON nested deeper than {max_depth} levels")
    if _SURROGATE_ESCAPE.search(text) is not None:
        found = lone_surrogate_at(data)
        if found is not None:
            where, what = found
            raise InvalidString(
                f"{what} at {where} holds a lone surrogate (an unpaired \\ud800-\\udfff "
                "escape), which cannot be stored as UTF-8",
                fields={where: "lone surrogate"},
            )
    return data


def _holdable(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def lone_surrogate_at(data: Any) -> tuple[str, str] | None:
    """Where the first string holding a lone surrogate is: its path (``$.a[1].b``; for a key,
    its object's) and what it is. Iterative, like ``depth_exceeds``."""
    stack: list[tuple[Any, str]] = [(data, "$")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, str):
            if not _holdable(node):
                return path, "the string"
        elif isinstance(node, dict):
            if not all(map(_holdable, node)):
                return path, "a key of the object"
            stack.extend((v, f"{path}.{k}") for k, v in reversed(node.items()))
        elif isinstance(node, list):
            stack.extend((v, f"{path}[{i}]") for i, v in reversed(list(enumerate(node))))
    return None


def depth_exceeds(data: Any, limit: int) -> bool:
    """Whether containers nest deeper than ``limit``; iterative, so it cannot overflow."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        children: Iterable[Any]
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return False
