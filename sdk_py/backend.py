"""Clients for the platform's servers: senders (email and SMS campaigns), saved logins,
accounts (which subjects an account logged in on, its coarse company traits) and marketers'
audience counts (statistics only).

All authenticate with a server API key (``gateway apikey create``), which must
never ship in an APP or a web page. Calls are synchronous and raise: a sender must know
whether it may contact someone before it does, and a login must know whether it resumed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Self, TypeAlias
from urllib.parse import quote

import httpx

from .errors import BudgetExhausted, GatewayRefused, GatewayUnavailable, TooCloseToEarlierQuery
from .retry import retry_after, retryable


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

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# Refusals with a class of their own (a subclass of GatewayRefused), by the gateway's code.
_REFUSALS: dict[str, type[GatewayRefused]] = {
    "saved_login_reused": SavedLoginReused,
    "too_close_to_earlier_query": TooCloseToEarlierQuery,
}


def _body(method: str, path: str, resp: httpx.Response) -> dict[str, Any]:
    if resp.status_code < 300:
        body: dict[str, Any] = resp.json()  # every answer of the gateway's is an object
        return body
    try:
        answer = resp.json()
    except ValueError:  # not JSON: a proxy's page, say
        answer = None
    err = answer.get("error") if isinstance(answer, dict) else None
    if not isinstance(err, dict):
        err = {}
    code = str(err.get("code", "http_error"))
    message = str(err.get("message", ""))
    fields = err.get("fields") if isinstance(err.get("fields"), dict) else None
    if code == "budget_exhausted":  # a 429 that no retry within the month would help
        wait = retry_after(resp.headers.get("Retry-After"))
        raise BudgetExhausted(
            resp.status_code, code, message, fields, None if wait is None else math.ceil(wait)
        )
    if retryable(resp.status_code):
        raise GatewayUnavailable(f"{method} {path}: HTTP {resp.status_code}", resp.status_code)
    raise _REFUSALS.get(code, GatewayRefused)(resp.status_code, code, message, fields)


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


# ---------------------------------------------------------------- audience counts

Filters: TypeAlias = Mapping[str, Sequence[str] | int]
"""``{"<dimension>": [values], "active_within_days": 7 | 30 | 90}``: people seen with any of
a dimension's values, in every dimension given (a single string is one value)."""


def _range(raw: Any) -> tuple[int, int] | None:
    return None if raw is None else (int(raw[0]), int(raw[1]))


def _estimate(raw: Any) -> int | None:
    return None if raw is None else int(raw)


@dataclass(frozen=True, slots=True)
class Estimate:
    """How many people a query matches: a noisy figure rounded to two significant digits,
    and a range that holds the true count with high probability. Below the floor (too few
    people to say) ``estimate`` and ``range`` are None, ``below_threshold`` is True and
    nothing was spent."""

    estimate: int | None
    range: tuple[int, int] | None
    below_threshold: bool
    epsilon_spent: float  # of the key's privacy budget, by this answer (0 when repeated)
    budget_left: float  # the key's budget left this month (UTC)

    @classmethod
    def from_answer(cls, body: Mapping[str, Any]) -> Estimate:
        return cls(
            _estimate(body["estimate"]),
            _range(body["range"]),
            bool(body["below_threshold"]),
            float(body["epsilon_spent"]),
            float(body["budget_left"]),
        )


@dataclass(frozen=True, slots=True)
class Cell:
    """One value of a breakdown's dimension: its count as an ``Estimate`` gives it."""

    value: str
    estimate: int | None
    range: tuple[int, int] | None
    below_threshold: bool

    @classmethod
    def from_answer(cls, body: Mapping[str, Any]) -> Cell:
        return cls(
            str(body["value"]),
            _estimate(body["estimate"]),
            _range(body["range"]),
            bool(body["below_threshold"]),
        )


@dataclass(frozen=True, slots=True)
class Breakdown:
    """A query's people counted per value of the dimension ``by``. Values below the floor are
    left out, except a trait's (a province, a company size), which are all listed, the small
    ones as ``below_threshold`` cells: never a zero."""

    by: str
    cells: tuple[Cell, ...]
    epsilon_spent: float
    budget_left: float

    @classmethod
    def from_answer(cls, body: Mapping[str, Any]) -> Breakdown:
        return cls(
            str(body["by"]),
            tuple(Cell.from_answer(c) for c in body["cells"]),
            float(body["epsilon_spent"]),
            float(body["budget_left"]),
        )

    def cell(self, value: str) -> Cell | None:
        """The cell of ``value`` as the gateway names it (``"广东省"``), if listed."""
        return next((c for c in self.cells if c.value == value), None)


def _filters(filters: Filters | None) -> dict[str, Any]:
    return {
        name: values if isinstance(values, (str, int)) else list(values)
        for name, values in (filters or {}).items()
    }


class AudiencesClient(_KeyedClient):
    """For marketers' tools (an API key with scope ``audiences``; ``queries`` needs one with
    ``audiences_admin``): how many consenting people a set of filters matches, as statistics
    only, never a list or an identifier.

    Every released number costs part of the key's monthly privacy budget; asking the same
    question again the same day returns the same answer for free. Refusals:
    ``GatewayRefused`` (400 ``validation_failed``: ``fields`` names each unknown dimension or
    value; 401 ``invalid_api_key``), ``TooCloseToEarlierQuery`` (400), ``BudgetExhausted``
    (429, with ``retry_after``), and ``GatewayUnavailable`` (no answer, or a 5xx)."""

    def estimate(self, filters: Filters | None = None) -> Estimate:
        """The number of people matching ``filters`` (everyone counted, without)."""
        body = self._call("POST", "/v1/audiences/estimate", json={"filters": _filters(filters)})
        return Estimate.from_answer(body)

    def breakdown(self, by: str, filters: Filters | None = None) -> Breakdown:
        """The people matching ``filters`` counted per value of the dimension ``by``."""
        payload = {"by": by, "filters": _filters(filters)}
        return Breakdown.from_answer(self._call("POST", "/v1/audiences/breakdown", json=payload))

    def queries(self, since_ms: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        """The audit log (every query by every key, answered or refused) from ``since_ms``,
        oldest first, at most ``limit`` (1 to 1,000) entries: ``at``, ``key``, ``kind``,
        ``filters``, ``outcome`` (``answered`` or the refusal's code), ``epsilon_spent`` and,
        when answered, ``answer``. Needs the scope ``audiences_admin``."""
        params = {"since": str(since_ms), "limit": str(limit)}
        body = self._call("GET", "/v1/audiences/queries", params=params)
        entries: list[dict[str, Any]] = body["queries"]
        return entries
