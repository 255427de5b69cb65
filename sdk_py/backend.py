"""Clients for the platform's servers: senders (email and SMS campaigns), saved logins and
accounts (which subjects an account logged in on, its coarse company traits).

Both authenticate with a server API key (``gateway apikey create``), which must
never ship in an APP or a web page. Calls are synchronous and raise: a sender must know
whether it may contact someone before it does, and a login must know whether it resumed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from .errors import GatewayRefused, GatewayUnavailable
from .retry import retryable


class SavedLoginReused(GatewayRefused):
    """A token that had been rotated away was presented (however many resumes ago): it was
    probably copied, and the gateway revoked every saved login of the account. Ask the person
    to log in again."""


class _KeyedClient:
    def __init__(
        self,
        endpoint: str,
        api_key: str,
        *,
        timeout: float = 10.0,
        verify: bool | str = True,
    ) -> None:
        self._http = httpx.Client(
            base_url=endpoint.rstrip("/"),
            timeout=timeout,
            verify=verify,
            headers={"Authorization": f"Bearer {api_key}"},
        )

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            resp = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as e:
            raise GatewayUnavailable(f"{method} {path}: {type(e).__name__}: {e}") from e
        return _body(method, path, resp)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> _KeyedClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _body(method: str, path: str, resp: httpx.Response) -> dict[str, Any]:
    if resp.status_code < 300:
        body: dict[str, Any] = resp.json()  # every answer of the gateway's is an object
        return body
    if retryable(resp.status_code):
        raise GatewayUnavailable(f"{method} {path}: HTTP {resp.status_code}", resp.status_code)
    try:
        err = resp.json().get("error", {})
    except ValueError:
        err = {}
    kind = SavedLoginReused if err.get("code") == "saved_login_reused" else GatewayRefused
    raise kind(
        resp.status_code,
        str(err.get("code", "http_error")),
        str(err.get("message", "")),
        err.get("fields") if isinstance(err.get("fields"), dict) else None,
    )


class SendersClient(_KeyedClient):
    """For the platform's email and SMS senders (an API key with scope ``senders``)."""

    def contact(self, subject: str, channel: str) -> dict[str, Any]:
        """Whether ``subject`` may be sent advertising on ``channel`` now, and why not."""
        return self._call(
            "GET", "/v1/senders/contact", params={"subject": subject, "channel": channel}
        )

    def may_contact(self, subject: str, channel: str) -> bool:
        return bool(self.contact(subject, channel)["may_contact"])

    def suppressions(self, channel: str, since_ms: int = 0) -> Iterator[tuple[str, int]]:
        """(subject, when in ms) of everyone who left ``channel`` since ``since_ms``, oldest
        first; read as the gateway streams it, so a long list is never held whole. A list the
        gateway could not finish (its store failing midway) raises GatewayUnavailable after
        the rows it did send: resume from the last time seen."""
        params = {"channel": channel, "since": str(since_ms), "end": "1"}
        try:
            with self._http.stream("GET", "/v1/senders/suppressions", params=params) as resp:
                if resp.status_code >= 300:
                    resp.read()
                    _body("GET", "/v1/senders/suppressions", resp)
                ended = False
                for line in resp.iter_lines():
                    if not line.strip():
                        continue
                    row = json.loads(line)
                    if "error" in row:  # the store failed after the answer began
                        raise GatewayUnavailable(
                            f"GET /v1/senders/suppressions: cut short ({row['error']['code']})"
                        )
                    if row.get("end"):
                        ended = True
                        break
                    yield row["subject"], int(row["at_ms"])
                if not ended:
                    raise GatewayUnavailable("GET /v1/senders/suppressions: the list was cut short")
        except httpx.HTTPError as e:
            raise GatewayUnavailable(f"GET /v1/senders/suppressions: {e}") from e

    def links(
        self,
        subject: str,
        channel: str,
        *,
        campaign: str | None = None,
        phone: str | None = None,
    ) -> dict[str, Any]:
        """A recipient's links: email open beacon, unsubscribe URL and ``List-Unsubscribe``
        headers; or an SMS code (``phone``: the number replies such as TD will come from)."""
        body: dict[str, Any] = {"subject": subject, "channel": channel}
        if campaign is not None:
            body["campaign"] = campaign
        if phone is not None:
            body["phone"] = phone
        return self._call("POST", "/v1/senders/links", json=body)


@dataclass(frozen=True, slots=True)
class SavedLogin:
    token: str  # opaque; store it in the cookie only: the gateway keeps no copy of it
    account: str
    subject: str
    expires_at_ms: int
    max_age_s: int
    set_cookie: str  # the Set-Cookie header value to send to the browser

    @classmethod
    def from_answer(cls, body: dict[str, Any]) -> SavedLogin:
        return cls(
            body["token"],
            body["account"],
            body["subject"],
            int(body["expires_at_ms"]),
            int(body["max_age_s"]),
            body["set_cookie"],
        )


class SavedLoginClient(_KeyedClient):
    """For the platform's backend (an API key with scope ``saved_login``)."""

    def issue_saved_login(
        self, account: str, subject: str, lifetime_s: int | None = None
    ) -> SavedLogin:
        """A token for ``account`` on the browser or APP ``subject`` (its id or signed token),
        if that person granted ``saved_login``; the lifetime is capped by the gateway."""
        body: dict[str, Any] = {"account": account, "subject": subject}
        if lifetime_s is not None:
            body["lifetime_s"] = lifetime_s
        return SavedLogin.from_answer(self._call("POST", "/v1/saved-login", json=body))

    def resume_saved_login(self, token: str) -> SavedLogin:
        """The account the token logs in, and its replacement (set it as the new cookie).
        Raises SavedLoginReused when the token had already been replaced."""
        body = self._call("POST", "/v1/saved-login/resume", json={"token": token})
        return SavedLogin.from_answer(body)

    def revoke_saved_logins(
        self,
        *,
        token: str | None = None,
        account: str | None = None,
        subject: str | None = None,
    ) -> int:
        """Revoke one token, every token of an account (log out everywhere) or of a subject."""
        given = {
            k: v for k, v in (("token", token), ("account", account), ("subject", subject)) if v
        }
        if len(given) != 1:
            raise ValueError("give exactly one of token, account or subject")
        return int(self._call("DELETE", "/v1/saved-login", json=given)["revoked"])


class AccountsClient(_KeyedClient):
    """For the platform's backend (an API key with scope ``accounts``): link the subjects an
    account logs in on, so that audience counts count the person once, and set the account's
    coarse traits (only the values ``GET /v1/policy`` lists under ``traits``)."""

    @staticmethod
    def _path(account: str, *rest: str) -> str:
        """The account (and subject) as one path segment each: quoted whole, dots too, so
        that no client or server resolves ``.`` or ``..`` into another endpoint."""
        segments = [quote(x, safe="").replace(".", "%2E") for x in (account, *rest[1:])]
        return "/".join(["/v1/accounts", segments[0], *rest[:1], *segments[1:]])

    def link(self, account: str, subject: str) -> None:
        """Link the browser or APP ``subject`` (its id or signed token) to ``account``."""
        self._call("POST", self._path(account, "subjects"), json={"subject": subject})

    def unlink(self, account: str, subject: str) -> bool:
        """Whether ``subject`` had been linked to ``account``."""
        path = self._path(account, "subjects", subject)
        return bool(self._call("DELETE", path)["was_linked"])

    def set_traits(self, account: str, traits: Mapping[str, str | None]) -> dict[str, str]:
        """Set (None: remove) the account's traits; its traits afterwards, as the gateway
        keeps them (a province's short name as its full name). A value the catalogue does not
        list raises GatewayRefused (400) naming it."""
        body = self._call("PUT", self._path(account, "traits"), json=dict(traits))
        return {str(k): str(v) for k, v in body["traits"].items()}
