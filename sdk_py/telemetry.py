"""``TelemetryClient``: the APP's consent and telemetry, posted in batches, nothing lost.

``track`` is cheap and never raises: it cuts the event down to what is granted, gives it its
``event_id`` and puts it in a bounded buffer (memory, or the on-disk spool). One consumer
thread drains the buffer in batches (by count, bytes and time) to ``POST /v1/batch``,
gzipped, and retries what the gateway did not settle with backoff. Each event keeps its id
through every retry and restart, so the gateway stores it once.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from .buffer import Buffer, Item, MemoryBuffer, SpoolBuffer
from .device import DeviceInfo
from .errors import GatewayRefused, GatewayUnavailable, SdkError
from .policy import NOTHING, ConsentState, Policy
from .retry import Backoff, retry_after, retryable
from .transport import Reply, Transport

log = logging.getLogger("sdk_py")
T = TypeVar("T")

MAX_BATCH_EVENTS = 500  # the gateway's limit per batch
MAX_BATCH_BYTES = 900 * 1024  # under the gateway's 1 MiB, with room for the context


@dataclass
class Stats:
    """What became of tracked events; read it to watch the client."""

    tracked: int = 0  # accepted by track()
    stored: int = 0
    duplicates: int = 0
    not_consented: int = 0  # the gateway had no grant for any purpose of the event
    rejected: int = 0  # the gateway refused the event (logged with the reason)
    given_up: int = 0  # dropped after a refusal that retrying cannot fix (logged)
    dropped_full: int = 0  # the buffer was full
    dropped_no_consent: int = 0  # nothing granted (or no subject yet): nothing to send
    dropped_invalid: int = 0  # unknown event type, or the event could not be encoded
    batches: int = 0
    retries: int = 0


class TelemetryClient:
    """Consent and telemetry for one APP installation.

    ``spool``: a file path for the on-disk buffer (events then survive the process and a
    long outage); without it events wait in memory. ``device`` reads the device context
    through the APP's functions. The subject token, the consent state and the policy are
    kept in the spool too, so a restarted APP knows its grants without the network.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        token: str | None = None,
        spool: str | os.PathLike[str] | None = None,
        device: DeviceInfo | None = None,
        max_queue: int = 100_000,
        batch_size: int = MAX_BATCH_EVENTS,
        max_batch_bytes: int = MAX_BATCH_BYTES,
        flush_interval: float = 2.0,
        timeout: float = 10.0,
        backoff: Backoff | None = None,
        exit_timeout: float = 5.0,
        durable_spool: bool = False,
        transport: Transport | None = None,
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH_EVENTS:
            raise ValueError(f"batch_size must be 1..{MAX_BATCH_EVENTS}")
        if max_batch_bytes > 1024 * 1024 - 64 * 1024:
            raise ValueError("max_batch_bytes must leave room under the gateway's 1 MiB")
        self.transport = transport or Transport(endpoint, timeout=timeout)
        self.buffer: Buffer = (
            SpoolBuffer(Path(spool), max_queue, durable_spool)
            if spool is not None
            else MemoryBuffer(max_queue)
        )
        self.device = device
        self.batch_size = batch_size
        self.max_batch_bytes = max_batch_bytes
        self.flush_interval = flush_interval
        self.exit_timeout = exit_timeout
        self.backoff = backoff or Backoff()
        self.stats = Stats()
        self._init_sync()
        if token is not None:
            self.buffer.set_meta("token", token)
        self._token = self.buffer.get_meta("token")
        self._consent = _load(self.buffer, "consent", ConsentState.from_answer) or NOTHING
        self._policy: Policy | None = _load(self.buffer, "policy", Policy.from_document)
        self._cap = batch_size  # lowered for a while when the gateway finds a batch too large
        _CLIENTS.add(self)

    def _init_sync(self) -> None:
        self._lock = threading.Lock()  # the client's own state
        self._consent_lock = threading.RLock()  # consent calls, one at a time, in order
        self._cv = threading.Condition(threading.Lock())  # the consumer's wake-ups
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._flushing = 0
        self._busy = False  # a batch is on its way

    # ------------------------------------------------------------------ subject and policy
    @property
    def token(self) -> str | None:
        return self._token

    def subject(self) -> str:
        """The installation's subject token, created at the gateway the first time."""
        with self._lock:
            if self._token is not None:
                return self._token
        body = self.transport.call("POST", "/v1/subjects")
        token = str(body["token"])
        with self._lock:
            if self._token is None:
                self._token = token
                self.buffer.set_meta("token", token)
            return self._token

    def policy(self, refresh: bool = False) -> Policy:
        """The gateway's current policy (kept after the first fetch)."""
        if self._policy is None or refresh:
            doc = self.transport.call("GET", "/v1/policy")
            policy = Policy.from_document(doc)
            with self._lock:
                self._policy = policy
                self.buffer.set_meta("policy", json.dumps(doc, ensure_ascii=False))
        assert self._policy is not None
        return self._policy

    # ------------------------------------------------------------------ consent
    # Consent calls run one at a time (``_consent_lock``, held across their request), so the
    # ledger receives the person's choices in the order they were made. A withdrawal that
    # could not be sent is kept ("pending") and sent first, before any other consent call
    # and before any event; until then every answer from the gateway is read without the
    # pending purposes, so nothing is collected for them in the meantime.
    def state(self, refresh: bool = True) -> ConsentState:
        """The consent on record; fetched from the gateway unless ``refresh`` is false."""
        if refresh and self._token is not None:
            with self._consent_lock:
                answer = self.transport.call("GET", "/v1/consent", token=self._token)
                self._set_consent(ConsentState.from_answer(answer))
            current = answer.get("current_version")
            if self._policy is not None and current and current != self._policy.version:
                with contextlib.suppress(SdkError):  # a new policy: learn its fields
                    self.policy(refresh=True)
        return self._consent

    def grant(self, **purposes: bool) -> dict[str, Any]:
        """Record the person's choices (``personalization=True, advertising=False``...).

        Returns the gateway's receipt. Raises SdkError when it was not recorded; what the
        client sends follows the grants only once the gateway has them. A refusal
        (``False``) applies at once and, like ``withdraw``, is kept until recorded.

        A purpose the policy marks ``sensitive`` (precise location) needs a separate consent
        (PIPL art. 29): ask for it on a screen of its own and grant it alone
        (``grant(precise_location=True)``). Granted together with other choices it raises
        ValueError and nothing is sent: the SDK cannot know that the person was asked
        separately, so it does not make one choice into two.
        """
        policy = self.policy(refresh=True)  # consent is given to the policy as it is now
        unknown = set(purposes) - policy.optional
        if unknown:
            raise ValueError(f"unknown purposes: {', '.join(sorted(unknown))}")
        bundled = _bundled_sensitive(purposes, policy)
        if bundled:
            raise ValueError(
                f"{', '.join(bundled)}: sensitive personal information needs a separate "
                "consent (PIPL art. 29); ask for it on its own and grant it alone"
            )
        refused = frozenset(p for p, on in purposes.items() if not on)
        token = self.subject()
        with self._consent_lock:
            # an earlier withdrawal first: the ledger gets the choices in the order made
            if self._pending() and self._send_withdrawal() is None:
                if refused:
                    self._keep_withdrawal(refused)
                raise GatewayUnavailable("the gateway is unreachable; nothing was granted")
            if refused:
                self._keep_withdrawal(refused)  # applies now; kept if the call below fails
            answer = self.transport.call(
                "POST",
                "/v1/consent",
                token=token,
                body={"policy_version": policy.version, "purposes": purposes, "source": "app"},
            )
            self.buffer.set_meta("pending_withdraw", None)  # the refusals are recorded now
            self._set_consent(ConsentState.from_answer(answer["state"]))
            return dict(answer["receipt"])

    def withdraw(self, *purposes: str) -> dict[str, Any] | None:
        """Withdraw the given purposes, or every one: stops collecting them at once.

        The withdrawal applies locally before the gateway is asked; if the gateway cannot be
        reached it is kept (in the spool, if there is one) and sent before anything else,
        and GatewayUnavailable is raised. Returns the receipt, or None when there was no
        subject (nothing to withdraw).
        """
        policy = self._policy
        if policy is None and purposes:
            with contextlib.suppress(SdkError):  # offline: the gateway judges the names later
                policy = self.policy()
        if policy is not None and frozenset(purposes) - policy.optional:
            unknown = frozenset(purposes) - policy.optional
            raise ValueError(f"unknown purposes: {', '.join(sorted(unknown))}")
        with self._consent_lock:
            if self._token is None:
                self._set_consent(
                    self._consent.without(frozenset(purposes)) if purposes else NOTHING
                )
                return None
            self._keep_withdrawal(frozenset(purposes) if purposes else None)
            receipt = self._send_withdrawal()
        if receipt is None:
            raise GatewayUnavailable("the withdrawal is kept and will be sent when possible")
        return receipt

    def _pending(self) -> list[str]:
        return list(json.loads(self.buffer.get_meta("pending_withdraw") or "[]"))

    def _keep_withdrawal(self, purposes: frozenset[str] | None) -> None:
        """Add to the kept withdrawal (None: every purpose) and apply it locally at once."""
        pending = self._pending()
        merged = ["*"] if purposes is None or "*" in pending else sorted({*pending, *purposes})
        self.buffer.set_meta("pending_withdraw", json.dumps(merged))
        self._set_consent(self._consent)

    def _send_withdrawal(self) -> dict[str, Any] | None:
        """Send the kept withdrawal; its receipt, or None if the gateway could not take it."""
        with self._consent_lock:
            pending = self._pending()
            if not pending or self._token is None:
                return None
            try:
                if "*" in pending:
                    answer = self.transport.call(
                        "DELETE", "/v1/consent?source=app", token=self._token
                    )
                else:
                    answer = self.transport.call(
                        "POST",
                        "/v1/consent",
                        token=self._token,
                        body={
                            "policy_version": self.policy().version,
                            "purposes": dict.fromkeys(pending, False),
                            "source": "app",
                        },
                    )
            except GatewayRefused as e:
                # Refused for good (not "try later"): keeping it would hold back every event.
                log.error("withdrawal refused by the gateway, dropped: %s", e)
                self.buffer.set_meta("pending_withdraw", None)
                raise
            except SdkError as e:
                log.warning("withdrawal not recorded yet: %s", e)
                return None
            self.buffer.set_meta("pending_withdraw", None)
            self._set_consent(ConsentState.from_answer(answer["state"]))
            return dict(answer["receipt"])

    def _set_consent(self, state: ConsentState) -> None:
        """Take a consent state, less any withdrawal not yet on the ledger."""
        pending = self._pending()
        if "*" in pending:
            state = ConsentState(
                state.granted - self._optional(), state.policy_version, state.needs_reconsent
            )
        elif pending:
            state = state.without(frozenset(pending))
        with self._lock:
            self._consent = state
            self.buffer.set_meta("consent", json.dumps(state.to_json()))

    def _optional(self) -> frozenset[str]:
        policy = self._policy
        return policy.optional if policy is not None else self._consent.granted - {"necessary"}

    # ------------------------------------------------------------------ tracking
    def track(self, type_: str, /, **fields: Any) -> bool:
        """Queue an event; True when queued. Never blocks on the network, never raises.

        Fields whose purpose is not granted are left out here; with nothing granted (or no
        subject yet) nothing is queued. ``ts`` may be given as a datetime.
        """
        try:
            return self._track(type_, fields)
        except Exception:  # never into the APP
            log.exception("track(%r) failed", type_)
            with self._lock:
                self.stats.dropped_invalid += 1
            return False

    def _track(self, type_: str, fields: dict[str, Any]) -> bool:
        with self._lock:
            token, consent, policy = self._token, self._consent, self._policy
        granted = consent.granted
        if token is None or policy is None or not granted & policy.optional:
            with self._lock:
                self.stats.dropped_no_consent += 1
            return False
        ts = fields.pop("ts", None)
        if type_ not in policy.events:
            log.warning("unknown event type %r: not sent", type_)
            with self._lock:
                self.stats.dropped_invalid += 1
            return False
        kept, _ = policy.minimise(type_, fields, granted)
        event: dict[str, Any] = {"event_id": uuid.uuid4().hex, "type": type_}
        if isinstance(ts, datetime):
            ts = ts.isoformat(timespec="milliseconds")
        event["ts"] = ts if isinstance(ts, str) else _now()
        event.update(kept)
        context: dict[str, Any] = {}
        if self.device is not None:
            context = self.device.context(policy.app_context, granted, policy.limits)
            if "gps" not in fields:
                position = self.device.position(policy.any_event, granted)
                if position is not None:
                    event["gps"] = position
        body = json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()
        ctx = json.dumps(context, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        if not self.buffer.put(token, ctx, body):
            with self._lock:
                self.stats.dropped_full += 1
            log.warning("telemetry buffer full: event dropped")
            return False
        with self._lock:
            self.stats.tracked += 1
        self._start()
        if len(self.buffer) >= self._cap:
            with self._cv:
                self._cv.notify_all()
        return True

    # ------------------------------------------------------------------ flushing
    def flush(self, timeout: float | None = None) -> bool:
        """Send everything buffered now; True once the buffer is empty, False at the timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if len(self.buffer) == 0 and not self._busy:
            return True
        self._start()
        with self._cv:
            self._flushing += 1
            self._cv.notify_all()
            try:
                while len(self.buffer) > 0 or self._busy:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        return False
                    if self._thread is None or not self._thread.is_alive():
                        return False
                    self._cv.wait(0.1 if left is None else min(left, 0.1))
                return True
            finally:
                self._flushing -= 1

    def shutdown(self, timeout: float | None = None) -> bool:
        """Flush (within ``timeout``), stop the consumer and close; True if all was sent.

        With a spool, what could not be sent stays on disk for the next start.
        """
        sent = self.flush(self.exit_timeout if timeout is None else timeout)
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=1.0)  # a batch still in flight is sent again next time
        self.transport.close()
        self.buffer.close()
        _CLIENTS.discard(self)
        return sent

    def __enter__(self) -> TelemetryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # ------------------------------------------------------------------ the consumer
    def _start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._cv:
            if self._stopping or (self._thread is not None and self._thread.is_alive()):
                return
            self._thread = threading.Thread(target=self._run, name="sdk_py-consumer", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._stopping and not self._due():
                    self._cv.wait(self.flush_interval)
                    if len(self.buffer) > 0:
                        break  # the interval passed with events waiting
                if self._stopping:
                    return
                self._busy = True
            try:
                delay = self._drain_once()
            except Exception:  # a bug must not kill the consumer and strand the buffer
                log.exception("telemetry consumer failed; retrying")
                delay = self.backoff.next_delay()
            finally:
                with self._cv:
                    self._busy = False
                    self._cv.notify_all()
            if delay:
                with self._cv:
                    self.stats.retries += 1
                    self._cv.wait_for(lambda: self._stopping, timeout=delay)

    def _due(self) -> bool:
        n = len(self.buffer)
        return n >= self._cap or (n > 0 and self._flushing > 0)

    def _drain_once(self) -> float:
        """Send one batch; the delay before the next attempt (0: go on)."""
        if self.buffer.get_meta("pending_withdraw"):
            try:
                if self._send_withdrawal() is None:
                    return self.backoff.next_delay()  # no event leaves before the withdrawal
            except GatewayRefused:
                pass  # logged and dropped: the events go on
        items = self.buffer.take(self._cap, self.max_batch_bytes)
        if not items:
            return 0.0
        try:
            reply = self.transport.send(
                "POST", "/v1/batch", token=items[0].subject, raw=_batch_body(items)
            )
        except GatewayUnavailable as e:
            log.info("gateway unreachable (%s); retrying", e)
            return self.backoff.next_delay()
        with self._lock:
            self.stats.batches += 1
        return self._settle(items, reply)

    def _settle(self, items: list[Item], reply: Reply) -> float:
        if reply.status == 202 and isinstance(reply.body, dict):
            self._count(reply.body.get("results", []))
            self.buffer.ack(items)
            self.backoff.reset()
            self._cap = self.batch_size
            return 0.0
        if retryable(reply.status):
            floor = retry_after(reply.headers.get("retry-after"))
            log.info("gateway answered %s; retrying", reply.status)
            return self.backoff.next_delay(floor)
        if reply.status == 413 and len(items) > 1:
            self._cap = max(1, len(items) // 2)  # smaller batches until one gets through
            return 0.0
        err = reply.error()
        if err.code == "no_valid_event":
            with self._lock:
                self.stats.rejected += len(items)
            log.warning("gateway refused a whole batch of %d events: %s", len(items), err.fields)
        else:
            with self._lock:
                self.stats.given_up += len(items)
            log.error("gave up on %d events: %s", len(items), err)
        self.buffer.ack(items)
        self.backoff.reset()
        return 0.0

    def _count(self, results: list[Mapping[str, Any]]) -> None:
        with self._lock:
            for r in results:
                status = r.get("status")
                if status == "stored":
                    self.stats.stored += 1
                elif status == "duplicate":
                    self.stats.duplicates += 1
                elif status == "not_consented":
                    self.stats.not_consented += 1
                else:
                    self.stats.rejected += 1
                    log.warning("event %s refused: %s", r.get("event_id"), r.get("error"))

    # ------------------------------------------------------------------ fork
    def _after_fork(self) -> None:
        """In a forked child: fresh locks, no consumer yet, the buffer reopened."""
        self._init_sync()
        self.buffer.after_fork()


def _bundled_sensitive(purposes: dict[str, bool], policy: Policy) -> list[str]:
    """The purposes the policy document marks ``sensitive`` that ``purposes`` grants together
    with other decisions (the gateway refuses such a request: 400 separate_consent_required)."""
    doc = policy.document.get("purposes", {})
    others = [p for p in purposes if p != "necessary"]
    return (
        sorted(p for p, on in purposes.items() if on is True and doc.get(p, {}).get("sensitive"))
        if len(others) > 1
        else []
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _batch_body(items: list[Item]) -> bytes:
    ctx = items[0].context.encode()
    return b'{"context":' + ctx + b',"events":[' + b",".join(i.body for i in items) + b"]}"


def _load(buffer: Buffer, key: str, make: Callable[[Any], T]) -> T | None:
    raw = buffer.get_meta(key)
    if raw is None:
        return None
    try:
        return make(json.loads(raw))
    except (ValueError, KeyError, TypeError):
        log.warning("ignoring unreadable %s in the spool", key)
        return None


_CLIENTS: weakref.WeakSet[TelemetryClient] = weakref.WeakSet()


def _at_exit() -> None:
    """A bounded last flush: an APP's exit waits at most each client's ``exit_timeout``."""
    for client in list(_CLIENTS):
        try:
            client.shutdown()
        except Exception:
            log.exception("telemetry shutdown at exit failed")


def _after_fork_in_child() -> None:
    for client in list(_CLIENTS):
        client._after_fork()


atexit.register(_at_exit)
os.register_at_fork(after_in_child=_after_fork_in_child)
