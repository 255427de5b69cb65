"""Paged answers: ``limit`` and ``cursor`` query parameters, read the same way everywhere.

A person's ledger or events can be long (thousands of entries for a busy APP); answering all
of it at once let one request pull megabytes (a 4.6 MB ledger was measured). Pages hold
``limit`` items (default 100, at most 1,000) and the answer's ``next_cursor`` fetches the
next one; it is null on the last page. A cursor is a few non-negative integers joined by
dots: opaque to clients, and refused with 400 when it is not one the gateway could have made.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from ..core.errors import InvalidCursor, ValidationFailed

DEFAULT_LIMIT = 100
MAX_LIMIT = 1_000
_MAX_PART = 10**12


def limit_of(args: Mapping[str, str]) -> int:
    raw = args.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 6) or not 1 <= int(raw) <= MAX_LIMIT:
        raise ValidationFailed(
            f"limit: an integer from 1 to {MAX_LIMIT}", fields={"limit": f"1-{MAX_LIMIT}"}
        )
    return int(raw)


def cursor_of(args: Mapping[str, str], parts: int) -> tuple[int, ...]:
    """The cursor's ``parts`` integers (all zero without a cursor: the first page)."""
    raw = args.get("cursor")
    if raw is None or raw == "":
        return (0,) * parts
    pieces = raw.split(".")
    if len(pieces) != parts or not all(
        p.isascii() and p.isdigit() and len(p) <= 12 and int(p) < _MAX_PART for p in pieces
    ):
        raise InvalidCursor("not a cursor this gateway made", fields={"cursor": raw[:64]})
    return tuple(int(p) for p in pieces)


def cursor_text(*parts: int) -> str:
    return ".".join(str(p) for p in parts)


def since_of(value: str) -> int:
    """A time in ms since the epoch, or an ISO 8601 time with its offset."""
    if value.isascii() and value.isdigit() and len(value) <= 16:
        return int(value)
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise ValidationFailed(
            "since: ms since the epoch or an ISO 8601 time with offset",
            fields={"since": "invalid"},
        )
    return int(when.timestamp() * 1000)
