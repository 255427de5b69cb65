"""Key names (gateway/storage/keys.py): one hash slot per subject, groups spread evenly."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st
from redis.crc import key_slot

from gateway.storage.keys import Keys

SUBJECT_KINDS = ("consent", "ledger", "dedup", "index", "logins", "sms")
CHANNELS = ("email", "sms")


def slot(key: str) -> int:
    return key_slot(key.encode())


GROUPS = st.sampled_from([1, 2, 3, 7, 64, 100, 1024])


@given(st.uuids().map(lambda u: u.hex), GROUPS)
@settings(max_examples=200, deadline=None)
def test_every_key_a_subjects_write_touches_is_in_its_slot(sid: str, groups: int) -> None:
    """A write is one script, which Redis Cluster runs only on keys of one slot."""
    keys = Keys(groups)
    touched = [keys.subject(sid, kind) for kind in SUBJECT_KINDS]
    touched += [keys.stream(p, sid) for p in ("personalization", "advertising")]
    touched += [keys.suppression(c, sid) for c in CHANNELS]
    assert len({slot(k) for k in touched}) == 1
    assert keys.stream("personalization", sid) in keys.streams("personalization")
    assert keys.suppression("sms", sid) in keys.suppressions("sms")


@given(st.integers(1, 200) | GROUPS)
@settings(max_examples=40, deadline=None)
def test_each_group_lies_in_its_own_share_of_the_slots(groups: int) -> None:
    tags = Keys(groups).tags
    assert len(tags) == len(set(tags)) == groups
    for g, tag in enumerate(tags):
        assert g * 16384 // groups <= slot(tag + ":x") < (g + 1) * 16384 // groups


def test_the_default_groups_spread_over_three_masters_and_subjects_over_the_groups() -> None:
    """``redis-cli --cluster create`` splits the slots evenly: 64 groups give 21, 21 and 22
    to three masters; 100,000 subjects fill each group within 5 % of the mean."""
    keys = Keys()
    ranges = [(0, 5461), (5461, 10923), (10923, 16384)]
    per_master = Counter(
        next(i for i, (lo, hi) in enumerate(ranges) if lo <= slot(t) < hi) for t in keys.tags
    )
    assert sorted(per_master.values()) == [21, 21, 22]
    sids = [f"{n:032x}" for n in range(100_000)]
    per_group = Counter(keys.tag(s) for s in sids)
    mean = len(sids) / keys.groups
    assert len(per_group) == 64 and all(abs(n - mean) < 0.05 * mean for n in per_group.values())


def test_the_layout_names_the_groups_and_keys_of_no_subject_have_their_own_tags() -> None:
    assert Keys(64).layout == "3/64" and Keys(8).layout == "3/8"
    assert Keys.address("abc", "new") == "rl:{abc}:new"
    assert Keys.sms_code("123456").startswith("sms:code:{")
