"""Who is calling: the subject a request speaks for, from its cookie or ``X-Subject`` header.

The client's word is never taken: only a token that verifies under the gateway's keys names a
subject. A forged cookie is dropped and replaced; a forged header (the APP) is refused,
since an APP that lost its token must create a new subject deliberately.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache

from flask import Flask, Request, Response, current_app, g, request
from werkzeug.http import dump_cookie

from .cookies import (
    CONSENT_COOKIE,
    OPTOUT_COOKIE,
    SUBJECT_HEADER,
    VID_COOKIE,
    Tokens,
    is_subject_id,
    new_subject_id,
)
from .errors import GatewayError, ValidationFailed


def subject_param(value: object) -> str:
    """A subject id given by a server caller (a path or body value); 400 otherwise."""
    if not is_subject_id(value):
        raise ValidationFailed("not a subject id", fields={"subject": "32 hex digits"})
    return str(value)


class InvalidSubject(GatewayError):
    status = 401
    code = "invalid_subject"


@dataclass(slots=True)
class Caller:
    sid: str | None
    via: str | None  # "header", "cookie" or None
    forged: bool = False  # a token was presented and did not verify
    new: bool = False  # the gateway minted this subject during the request

    def ensure(self) -> str:
        """The subject id, minting a new one for a browser that has none (or a forged one)."""
        if self.sid is None:
            self.sid = new_subject_id()
            self.via = "cookie"
            self.new = True
        return self.sid


def identify(request: Request, tokens: Tokens) -> Caller:
    return identify_from(
        tokens, request.headers.get(SUBJECT_HEADER), request.cookies.get(VID_COOKIE)
    )


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
    who = g.get("caller")
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
