"""SMS unsubscribe codes (``sms:code:{<code>}``) and the keyed hashes of the numbers they
were sent to (``sms:phone:{<hash>}``), each naming its subject for ``SMS_CODE_TTL_S``; the
subject's set (``sms``, in its slot group) lists them so that erasing the subject finds them.
How codes and hashes are made is ``core/sms.py``."""

from __future__ import annotations

from collections.abc import Sequence

from .client import Client, translating
from .keys import Keys

CODE_PREFIX = "code:"
PHONE_PREFIX = "phone:"


class RedisCodeStore:
    def __init__(self, client: Client, keys: Keys) -> None:
        self.r = client
        self.keys = keys

    def _name(self, kind: str, value: str) -> str:
        return self.keys.sms_code(value) if kind == "code" else self.keys.sms_phone(value)

    @translating
    def claim_code(self, code: str, sid: str, ttl_s: int) -> bool:
        """The code for ``sid``, unless it is taken."""
        return bool(self.r.set(self.keys.sms_code(code), sid, ex=ttl_s, nx=True))

    @translating
    def remember_phone(self, phone_mac: str, sid: str, ttl_s: int) -> None:
        self.r.set(self.keys.sms_phone(phone_mac), sid, ex=ttl_s)

    @translating
    def list_for(self, sid: str, items: Sequence[tuple[str, str]], ttl_s: int) -> None:
        """Note ``items`` ((kind, value): "code" or "phone") in the subject's own set."""
        own = self.keys.subject(sid, "sms")
        pipe = self.r.pipeline(transaction=False)
        pipe.sadd(own, *(f"{kind}:{value}" for kind, value in items))
        pipe.expire(own, ttl_s)
        pipe.execute()

    @translating
    def subject_of_code(self, code: str) -> str | None:
        found = self.r.get(self.keys.sms_code(code))
        return None if found is None else str(found)

    @translating
    def subject_of_phone(self, phone_macs: Sequence[str]) -> str | None:
        """The subject the first of the hashes (one per configured key) names."""
        pipe = self.r.pipeline(transaction=False)
        for mac in phone_macs:
            pipe.get(self.keys.sms_phone(mac))
        return next((sid for sid in pipe.execute() if sid is not None), None)

    @translating
    def held(self, sid: str) -> list[tuple[str, str, int]]:
        """The subject's codes and phone hashes still its own: (kind, value, expiry ms)."""
        listed = sorted(map(str, self.r.smembers(self.keys.subject(sid, "sms"))))
        items = [item.split(":", 1) for item in listed if ":" in item]
        pipe = self.r.pipeline(transaction=False)
        for kind, value in items:
            pipe.get(self._name(kind, value))
            pipe.pexpiretime(self._name(kind, value))
        answers = pipe.execute()
        out: list[tuple[str, str, int]] = []
        for i, (kind, value) in enumerate(items):
            owner, until = answers[2 * i], answers[2 * i + 1]
            if owner == sid and until is not None and int(until) >= 0:
                out.append((kind, value, int(until)))
        return out

    @translating
    def erase_subject(self, sid: str) -> int:
        """Delete the subject's codes and phone hashes (its set goes with its other keys)."""
        listed = map(str, self.r.smembers(self.keys.subject(sid, "sms")))
        names = [self._name(*item.split(":", 1)) for item in listed if ":" in item]
        if not names:
            return 0
        pipe = self.r.pipeline(transaction=False)
        for name in names:
            pipe.delete(name)
        return sum(pipe.execute())
