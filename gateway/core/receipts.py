"""Receipts: signed copies of ledger entries that anyone can verify without the gateway.

A receipt is its entry as JSON (``id``, ``entry_id``, ``subject``, ``time``,
``policy_version``, ``purposes``, ``source``, ``action``, ``prev``, ``hash``) plus ``jws``:
a JWS compact serialization (RFC 7515) signed with EdDSA over Ed25519 (RFC 8037), whose
``kid`` header is the RFC 7638 thumbprint of the signing key and whose payload is the
receipt without ``jws`` (JSON, keys sorted, no spaces, UTF-8). The public keys are served at
``GET /.well-known/jwks.json`` (RFC 7517), retired ones too, so a receipt stays verifiable
after a rotation. A signature made with the gateway's secret (an HMAC, as before) could only
be checked by the gateway itself; this one can be checked by the person, a regulator or a
court with any JOSE library (docs/privacy.md shows it).

Keys come from ``RECEIPT_KEYS`` (newest first, each a PEM file's path or the PEM itself; the
first, a private key, signs; the others may be private or public and are only published).
Without any, a development key is generated once in the instance folder, with a warning in
production (logged as information under ``--dev``): receipts signed by it prove nothing to
anyone who cannot trust that folder.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import ReceiptKeyError
from .ledger import entry_hash, entry_of_receipt
from .once import write_once

log = logging.getLogger(__name__)

ALG = "EdDSA"
DEV_KEY_FILE = "receipt_key.pem"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _raw(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def thumbprint(public: Ed25519PublicKey) -> str:
    """The key's RFC 7638 JWK thumbprint: SHA-256 of its required members, in order."""
    members = {"crv": "Ed25519", "kty": "OKP", "x": _b64(_raw(public))}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True)
    return _b64(hashlib.sha256(canonical.encode("ascii")).digest())


def canonical(receipt: Mapping[str, Any]) -> bytes:
    """A receipt's JWS payload: itself without ``jws``, keys sorted, no spaces, UTF-8."""
    body = {k: v for k, v in receipt.items() if k != "jws"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _load(item: str) -> Ed25519PrivateKey | Ed25519PublicKey:
    text = item.strip()
    if not text.startswith("-----BEGIN"):
        try:
            text = Path(text).read_text()
        except OSError as e:
            raise ReceiptKeyError(f"receipt key file {item!r}: {e}") from e
    data = text.encode("ascii", "replace")
    try:
        if "PRIVATE KEY" in text:
            key: Any = serialization.load_pem_private_key(data, password=None)
        else:
            key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as e:
        raise ReceiptKeyError(f"receipt key {item[:40]!r}...: not a PEM key ({e})") from e
    if not isinstance(key, Ed25519PrivateKey | Ed25519PublicKey):
        raise ReceiptKeyError(f"receipt key {item[:40]!r}...: not an Ed25519 key")
    return key


def development_key(instance: Path, dev: bool = False) -> str:
    """The instance folder's receipt key (made once, mode 0600): its PEM text. Made in
    production (not ``dev``) it is a warning: such receipts convince nobody else."""
    path = instance / DEV_KEY_FILE
    if path.is_file():
        return path.read_text()
    pem, made = write_once(
        path,
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    if not made:
        return pem.decode("ascii")
    if dev:
        log.info("GATEWAY_RECEIPT_KEYS not set: generated a development receipt key in %s", path)
    else:
        log.warning(
            "GATEWAY_RECEIPT_KEYS not set: generated a development receipt key in %s; receipts "
            "signed with it convince only those who trust this machine",
            path,
        )
    return pem.decode("ascii")


def receipt_body(entry: Mapping[str, str]) -> dict[str, Any]:
    """A ledger entry as its receipt shows it (without ``jws``)."""
    return {
        "id": entry["receipt_id"],
        "entry_id": entry["seq"],
        "subject": entry["subject"],
        "time": entry["time"],
        "policy_version": entry["policy_version"],
        "purposes": json.loads(entry["purposes"]),
        "source": entry["source"],
        "action": entry["action"],
        "prev": entry["prev"],
        "hash": entry["hash"],
    }


@dataclass(frozen=True, slots=True)
class ReceiptCheck:
    """What a receipt shows as given: a genuine signature over exactly its fields, and a hash
    that its fields produce. ``entry`` is the ledger entry it speaks for (None if malformed)."""

    signature: bool
    hash: bool
    entry: dict[str, str] | None


class Receipts:
    """Signs receipts with the newest key; publishes and verifies with all of them."""

    def __init__(self, keys: Sequence[str]) -> None:
        loaded = [_load(k) for k in keys]
        if not loaded or not isinstance(loaded[0], Ed25519PrivateKey):
            raise ReceiptKeyError("the first receipt key must be an Ed25519 private key")
        self._signing: Ed25519PrivateKey = loaded[0]
        publics = [k.public_key() if isinstance(k, Ed25519PrivateKey) else k for k in loaded]
        self._public = {thumbprint(p): p for p in publics}
        self.kid = thumbprint(publics[0])
        self._jws = jwt.PyJWS()

    def jwks(self) -> dict[str, Any]:
        """The public keys as a JWK Set (RFC 7517), the signing key first."""
        return {
            "keys": [
                {"kty": "OKP", "crv": "Ed25519", "x": _b64(_raw(p)), "kid": kid}
                | {"use": "sig", "alg": ALG}
                for kid, p in self._public.items()
            ]
        }

    def sign(self, entry: Mapping[str, str]) -> str:
        """The signature of a new entry's receipt, to be stored with the entry: the JWS
        without its payload (``<header>..<signature>``, RFC 7515 appendix F), ~160 bytes.

        Receipts are signed once, when their entry is written, never when the ledger is read:
        whoever can edit the store cannot have the gateway sign an entry they made up."""
        header, _, signature = self._jws.encode(
            canonical(receipt_body(entry)),
            self._signing,
            algorithm=ALG,
            headers={"kid": self.kid, "typ": None},
        ).split(".")
        return f"{header}..{signature}"

    def issue(self, entry: Mapping[str, str]) -> dict[str, Any]:
        """The receipt of a ledger entry: its JWS is the signature stored with the entry
        (``sign``) around the entry as it is now, so an entry altered in the store no longer
        verifies. An entry without a stored signature gets a receipt without ``jws``."""
        receipt = receipt_body(entry)
        header, _, signature = entry.get("sig", "").partition("..")
        if header and signature:
            payload = base64.urlsafe_b64encode(canonical(receipt)).rstrip(b"=").decode("ascii")
            receipt["jws"] = f"{header}.{payload}.{signature}"
        return receipt

    def attest(self, document: Mapping[str, Any], typ: str) -> dict[str, Any]:
        """``document`` with ``jws``: a JWS compact serialization over it (keys sorted, no
        spaces, UTF-8), signed now with the newest key: a receipt of something done that is
        not a ledger entry (an erasure, whose ledger goes with it). Its ``typ`` header names
        the kind (``erasure-receipt+jws``), so that it cannot pass for a consent receipt,
        whose header has none. Checked offline with the keys of ``jwks()``."""
        body = {k: v for k, v in document.items() if k != "jws"}
        token = self._jws.encode(
            canonical(body), self._signing, algorithm=ALG, headers={"kid": self.kid, "typ": typ}
        )
        return {**body, "jws": token}

    def payload(self, token: Any) -> dict[str, Any] | None:
        """The receipt a JWS carries, if one of the published keys signed it; else None."""
        if not isinstance(token, str) or len(token) > 8_192:
            return None
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            key = self._public.get(kid) if isinstance(kid, str) else None
            if key is None:
                return None
            signed = self._jws.decode_complete(token, key=key, algorithms=[ALG])
            data = json.loads(signed["payload"])
        except (jwt.PyJWTError, ValueError, TypeError, UnicodeError):
            return None
        return data if isinstance(data, dict) else None

    def check(self, receipt: Mapping[str, Any]) -> ReceiptCheck:
        """Check a receipt as given: its JWS signs exactly its other fields, and its fields
        hash to its ``hash``. Any field altered after issue fails both."""
        signed = self.payload(receipt.get("jws"))
        genuine = signed is not None and signed == {k: v for k, v in receipt.items() if k != "jws"}
        entry = entry_of_receipt(receipt)
        hashed = entry is not None and entry_hash(entry) == entry["hash"]
        return ReceiptCheck(genuine, hashed, entry)
