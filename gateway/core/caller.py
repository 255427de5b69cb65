"""Who is calling: the subject a request speaks for, from its cookie or ``X-Subject`` token.

The client's word is never taken: only a token that verifies under the gateway's keys names a
subject. A forged cookie is dropped and replaced; a forged header (the APP) is refused,
since an APP that lost its token must create a new subject deliberately.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import InvalidSubject, ValidationFailed
from .tokens import Tokens, is_subject_id, new_subject_id


@dataclass(slots=True)
class Caller:
    sid: str | None
    via: str | None  # "header", "cookie", "link" or None
    forged: bool = False  # a token was presented and did not verify
    new: bool = False  # the gateway minted this subject during the request

    def ensure(self) -> str:
        """The subject id, minting a new one for a browser that has none (or a forged one)."""
        if self.sid is None:
            self.sid = new_subject_id()
            self.via = "cookie"
            self.new = True
        return self.sid


def identify_from(tokens: Tokens, header: str | None, cookie: str | None) -> Caller:
    """The caller named by an ``X-Subject`` header value or else a ``_vid`` cookie value."""
    if header is not None:
        sid = tokens.verify_subject(header)
        if sid is None:
            raise InvalidSubject("the X-Subject token is not valid; create a subject first")
        return Caller(sid, "header")
    if cookie is None:
        return Caller(None, None)
    sid = tokens.verify_subject(cookie)
    if sid is None:
        return Caller(None, None, forged=True)
    return Caller(sid, "cookie")


def subject_param(value: object) -> str:
    """A subject id given by a server caller (a path or body value); 400 otherwise."""
    if not is_subject_id(value):
        raise ValidationFailed("not a subject id", fields={"subject": "32 hex digits"})
    return str(value)


def subject_or_token(tokens: Tokens, value: object) -> str:
    """A subject given by a server caller as its id or as a signed subject token (a ``_vid``
    cookie's or an ``X-Subject`` value, which the backend may have at hand); 400 otherwise."""
    sid = (
        str(value)
        if is_subject_id(value)
        else tokens.verify_subject(value)
        if isinstance(value, str) and len(value) <= 200
        else None
    )
    if sid is None:
        raise ValidationFailed("not a subject", fields={"subject": "an id or a signed token"})
    return sid
