"""Saved login for a limited period (clause 2(2) item 1), only when ``saved_login`` is granted.

The platform's backend (a server API key with scope ``saved_login``) asks for a token when a
person ticks "keep me logged in"; passwords never pass through the gateway. A token is
``<selector>.<generation>.<mac>``: the selector finds the record, the generation counts the
resumes, and the mac is an HMAC-SHA256 under the gateway's secret keys (``SECRET_KEYS``,
newest first; a token made under any configured key resumes) over the selector, the
generation and a random value kept in the record. The store keeps no token and nothing a
token can be computed from without the keys, so a copy of it cannot be replayed as logins.

Each resume moves the login to the next generation (atomically, in one script). A genuine
token of an earlier generation means two parties hold the login (one copied it), so every
saved login of the account is revoked and the answer says so: this is recognised for the
whole life of the login, however many rotations ago the copy was made, in one integer per
login (a list of rotated hashes, kept before, forgot after 8). A token whose mac is wrong is
refused and revokes nothing, so knowing a selector is not enough to log anyone out. A
token's lifetime is what the backend asks for, never more than ``SAVED_LOGIN_MAX_S`` (30
days by default), and it ends at that instant exactly (the check uses the store's clock
inside the script, not only the key's expiry).

Keeping no more than needed (clause 4): the account is needed only to answer ``resume`` and
to show the person what is held, so the record keeps it sealed (AES-256-GCM from
``cryptography``, a key derived from each secret key with HKDF, the record's selector as
associated data so a sealed account cannot be moved to another record), never in plain
text. The account index is ``acct:<HMAC(key, account)>:logins``, a keyed hash, so a
guessable account name cannot be found by hashing guesses; it is written under the newest
key and read under every configured one, and a resume moves an older login's index entry
and seal to the newest key, so dropping an old key later loses nothing that was used since.

The records and their indexes are kept by the store (``ports.LoginStore``): a record holds
``sid``, ``acct`` (the keyed hash of the account), ``sealed``, ``nonce``, ``gen``, ``issued``
and ``expires`` (ms), indexed by subject and by account hash, so that withdrawing
``saved_login`` or logging out everywhere revokes every token at once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Sequence
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import InvalidSavedLogin, SavedLoginReused
from .ports import LoginStore

SHOWN_SELECTOR = 6  # characters of a selector shown to the person (of 16: not enough to revoke)
_SELECTOR_RE = re.compile(r"[A-Za-z0-9_-]{16}")
_GENERATION_RE = re.compile(r"0|[1-9][0-9]{0,9}")  # exact in Lua's doubles
_MAC_RE = re.compile(r"[A-Za-z0-9_-]{43}")
_MAC_CONTEXT = b"gateway.saved-login.token:"
_ACCOUNT_CONTEXT = b"gateway.saved-login.account:"
_SEAL_INFO = b"gateway.saved-login.seal.v1"
_NONCE_BYTES = 12  # AES-GCM's standard nonce, random per seal


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class SavedLogins:
    def __init__(self, store: LoginStore, keys: Sequence[str | bytes], max_s: int) -> None:
        if not keys:
            raise ValueError("saved logins need at least one secret key")
        self.store = store
        self.max_s = max_s
        self._keys = [k.encode() if isinstance(k, str) else k for k in keys]  # newest first
        self._seals = [
            AESGCM(HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_SEAL_INFO).derive(k))
            for k in self._keys
        ]

    # -- what a token, an account index and a seal are made of

    def _mac(self, key: bytes, selector: str, generation: int | str, nonce: str) -> str:
        message = _MAC_CONTEXT + f"{selector}.{generation}.{nonce}".encode()
        return _b64(hmac.digest(key, message, "sha256"))

    def _token(self, selector: str, generation: int, nonce: str) -> str:
        """Always under the newest key: a token made under an older one is replaced at the
        next resume, so retiring that key later logs out only logins unused since."""
        return f"{selector}.{generation}.{self._mac(self._keys[0], selector, generation, nonce)}"

    def _genuine(self, selector: str, generation: str, nonce: str, mac: str) -> bool:
        return any(
            hmac.compare_digest(self._mac(key, selector, generation, nonce), mac)
            for key in self._keys
        )

    def _account_hash(self, account: str, key: bytes) -> str:
        return hmac.new(key, _ACCOUNT_CONTEXT + account.encode("utf-8"), hashlib.sha256).hexdigest()

    def _seal(self, selector: str, account: str) -> str:
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = self._seals[0].encrypt(nonce, account.encode("utf-8"), b"sl:" + selector.encode())
        return _b64(nonce + sealed)

    def _unseal(self, selector: str, sealed: str) -> tuple[str, int] | None:
        """The account and the index of the key that sealed it (0: the newest); None when no
        configured key opens it (sealed under a retired key, or not sealed for this record)."""
        try:
            raw = base64.urlsafe_b64decode(sealed + "=" * (-len(sealed) % 4))
        except (binascii.Error, ValueError):
            return None
        if len(raw) < _NONCE_BYTES + 16:  # nonce and GCM tag
            return None
        nonce, sealed_bytes = raw[:_NONCE_BYTES], raw[_NONCE_BYTES:]
        record = b"sl:" + selector.encode()
        for index, aead in enumerate(self._seals):
            try:
                plain = aead.decrypt(nonce, sealed_bytes, record)
            except InvalidTag:
                continue
            return plain.decode("utf-8"), index
        return None

    # -- the operations

    def issue(self, account: str, sid: str, lifetime_s: int) -> tuple[str, int]:
        """A new token and its expiry (ms since the epoch)."""
        selector = secrets.token_urlsafe(12)
        nonce = secrets.token_hex(16)
        issued = int(time.time() * 1000)
        expires = issued + min(lifetime_s, self.max_s) * 1000
        account_hash = self._account_hash(account, self._keys[0])
        self.store.create(
            selector,
            {
                "sid": sid,
                "acct": account_hash,
                "sealed": self._seal(selector, account),
                "nonce": nonce,
                "gen": 0,
                "issued": issued,
                "expires": expires,
            },
            account_hash,
            self.max_s * 1000,
        )
        return self._token(selector, 0, nonce), expires

    def resume(self, token: str) -> tuple[str, str, str, int]:
        """(account, subject, the next token, expiry ms); raises on anything else.

        The mac is checked before the script runs, so only a genuine token can rotate a login
        or revoke an account's; the script then compares generations and rotates in one step,
        so of two resumes racing with one token exactly one wins and the other is a reuse.
        This costs a read before the script (the mac covers the record's random value, which
        only the store has) and about 35 µs of CPU for the macs, seal and account hash
        (measured here with two keys), once per browser session.
        """
        parts = token.split(".")
        if (
            len(parts) != 3
            or not _SELECTOR_RE.fullmatch(parts[0])
            or not _GENERATION_RE.fullmatch(parts[1])
            or not _MAC_RE.fullmatch(parts[2])
        ):
            raise InvalidSavedLogin("not a saved-login token")
        selector, generation, mac = parts
        nonce, sealed, account_hash, sid = self.store.read(
            selector, "nonce", "sealed", "acct", "sid"
        )
        if nonce is None or sealed is None or account_hash is None or sid is None:
            raise InvalidSavedLogin("the saved login is not valid")
        if not self._genuine(selector, generation, nonce, mac):
            raise InvalidSavedLogin("the saved login is not valid")
        opened = self._unseal(selector, sealed)
        if opened is None:  # sealed under a key no longer configured
            raise InvalidSavedLogin("the saved login is not valid")
        account, sealed_by = opened
        newest_hash = self._account_hash(account, self._keys[0])
        new_hash = "" if newest_hash == account_hash else newest_hash
        resealed = self._seal(selector, account) if sealed_by else ""
        answer = self.store.resume(selector, generation, nonce, resealed, new_hash)
        if answer[0] == "ok" and new_hash:  # sealed under an older key: indexed under the newest
            self.store.move_account(selector, account_hash, new_hash, self.max_s * 1000)
        status = answer[0]
        if status == "ok":
            return account, sid, self._token(selector, int(answer[1]), nonce), int(answer[2])
        if status == "reused":
            revoked = self.revoke_account(account)
            raise SavedLoginReused(
                "this token was already used and replaced: it may have been stolen, so every "
                f"saved login of the account was revoked ({revoked})",
                fields={"revoked": str(revoked)},
            )
        raise InvalidSavedLogin(
            f"the saved login is {'expired' if status == 'expired' else 'not valid'}"
        )

    def revoke_token(self, token: str) -> int:
        selector = token.partition(".")[0]
        if not _SELECTOR_RE.fullmatch(selector):
            return 0
        return self.store.revoke([selector])

    def revoke_account(self, account: str) -> int:
        """Every login of the account, found under each configured key (logins issued before a
        key rotation and not resumed since are indexed under the older key)."""
        macs = [self._account_hash(account, key) for key in self._keys]
        return self.store.revoke(self.store.of_accounts(macs))

    def revoke_subject(self, sid: str) -> int:
        return self.store.revoke(self.store.of_subject(sid))

    def held(self, sid: str) -> list[dict[str, Any]]:
        """What is kept about each saved login of ``sid`` (policy clause 6), oldest first.

        Read from the subject's own index and records only. The account is unsealed so the
        person recognises it (``None`` if it was sealed under a key since retired); the
        selector is shown only in part: with the whole of it anyone holding an API key could
        revoke the login, and the token's mac is never kept, so it cannot be shown.
        """
        held: list[dict[str, Any]] = []
        for login in self.store.records(sid):
            if login.subject != sid:
                continue
            opened = self._unseal(login.selector, login.sealed)
            held.append(
                {
                    "account": opened[0] if opened else None,
                    "issued_at_ms": login.issued_ms,
                    "expires_at_ms": login.expires_ms,
                    "rotations": login.generation,
                    "selector_prefix": login.selector[:SHOWN_SELECTOR],
                }
            )
        held.sort(key=lambda login: (login["issued_at_ms"], login["selector_prefix"]))
        return held
