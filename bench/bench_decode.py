"""Validating event bodies: marshmallow schemas against the msgspec types the gateway uses.

    .venv/bin/python bench/bench_decode.py [--bodies 300] [--rounds 5] [--no-docs]

Both are generated from the same catalogue with the same rules (known event types only,
unknown fields refused, lengths, ranges, choices, URL scheme, the gps object, RFC 3339 times)
and validate the same 100-event bodies (the mix bench_gateway.py posts). marshmallow is the
owner-named library and validates the consent bodies; this measurement is why event bodies,
which must sustain tens of thousands a second, use msgspec instead. Rewrites its section of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

from marshmallow import RAISE, Schema, ValidationError, fields, validate  # noqa: E402
from report import run_header, write_section  # noqa: E402

from gateway.core.catalogue import Catalogue, Field, load  # noqa: E402
from gateway.core.errors import GatewayError  # noqa: E402
from gateway.core.events import EVENT_ID_PATTERN, EventCodec  # noqa: E402

EVENT_MIX = (
    {"type": "page_view", "url": "https://shop.example.com/products/m3?sku=SCS-M3-12",
     "referrer": "https://shop.example.com/search?q=m3", "title": "内六角圆柱头螺钉 M3 x 12"},
    {"type": "search", "keyword": "内六角 螺钉 M3", "product": "SCS", "model": "SCS-M3-12"},
    {"type": "click", "target": "add-to-cart", "url": "https://shop.example.com/products/m3"},
    {"type": "cart", "action": "add", "product": "SCS", "model": "SCS-M3-12", "quantity": 200,
     "price": 0.12},
)  # fmt: skip


class Gps(Schema):
    class Meta:
        unknown = RAISE

    lat = fields.Float(required=True, validate=validate.Range(-90, 90))
    lon = fields.Float(required=True, validate=validate.Range(-180, 180))
    accuracy = fields.Float(validate=validate.Range(0, 100_000))


def _field(f: Field) -> fields.Field:
    if f.type == "gps":
        return fields.Nested(Gps)
    if f.type == "integer":
        return fields.Integer(strict=True, validate=validate.Range(f.min, f.max))
    if f.type == "number":
        return fields.Float(validate=validate.Range(f.min, f.max))
    if f.type == "boolean":
        return fields.Boolean()
    if f.choices:
        return fields.String(validate=validate.OneOf(f.choices))
    if f.type == "url":
        return fields.Url(
            schemes={"http", "https"},
            require_tld=False,
            validate=validate.Length(max=f.max_length or 2048),
        )
    return fields.String(validate=validate.Length(max=f.max_length or 256))


def marshmallow_validator(cat: Catalogue) -> Any:
    """A body validator with marshmallow: one schema per event type, as the codec has."""
    client_context = [n for n, f in cat.context_fields.items() if f.source == "event"]
    schemas = {}
    for name, et in cat.events.items():
        attrs: dict[str, Any] = {
            "event_id": fields.String(required=True, validate=validate.Regexp(EVENT_ID_PATTERN)),
            "type": fields.String(required=True),
            "ts": fields.AwareDateTime(format="iso"),
        }
        for n in [*et.fields, *client_context]:
            attrs[n] = _field(cat.fields[n])
        attrs["Meta"] = type("Meta", (), {"unknown": RAISE})
        schemas[name] = type(f"{name}Schema", (Schema,), attrs)()

    def validate_body(raw: bytes) -> list[dict[str, Any]]:
        data = json.loads(raw)
        events = data["events"] if isinstance(data, dict) and "events" in data else [data]
        out = []
        for ev in events:
            schema = schemas.get(ev.get("type"))
            if schema is None:
                raise ValidationError("unknown event type")
            out.append(schema.load(ev))
        return out

    return validate_body


def bodies(n: int, per_body: int = 100) -> list[bytes]:
    ts = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    out = []
    for b in range(n):
        events = [
            {"event_id": f"bench-{b}-{i:03d}", "ts": ts, **EVENT_MIX[i % len(EVENT_MIX)]}
            for i in range(per_body)
        ]
        out.append(json.dumps({"events": events}, ensure_ascii=False).encode())
    return out


def per_event_us(fn: Any, data: list[bytes], per_body: int = 100) -> float:
    t0 = time.perf_counter()
    for raw in data:
        fn(raw)
    return (time.perf_counter() - t0) / (len(data) * per_body) * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bodies", type=int, default=300, help="100-event bodies per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--no-docs", action="store_true", help="do not touch docs/benchmarks.md")
    args = ap.parse_args()

    cat = load(None)
    codec = EventCodec(cat)
    mm = marshmallow_validator(cat)
    data = bodies(args.bodies)
    # Same answers first: both accept every body, and refuse the same bad one.
    assert all(len(codec.decode_body(raw)) == len(mm(raw)) == 100 for raw in data[:5])
    bad = data[0].replace(b'"quantity": 200', b'"quantity": "200"')
    for validator in (codec.decode_body, mm):
        try:
            validator(bad)
        except (ValidationError, GatewayError):  # each one's own refusal
            continue
        raise AssertionError(f"{validator} accepted a string quantity")

    ms, mm_us = [], []
    for _ in range(args.rounds):
        ms.append(per_event_us(codec.decode_body, data))
        mm_us.append(per_event_us(mm, data))
    res = {
        "msgspec_us": round(statistics.median(ms), 2),
        "marshmallow_us": round(statistics.median(mm_us), 2),
        "rounds_msgspec": [round(x, 2) for x in ms],
        "rounds_marshmallow": [round(x, 2) for x in mm_us],
    }
    res["ratio"] = round(res["marshmallow_us"] / res["msgspec_us"], 1)
    print(json.dumps(res))
    if not args.no_docs:
        write_section("bench_decode.py", markdown(res, args))
    return 0


def markdown(res: dict[str, Any], args: argparse.Namespace) -> str:
    v = {d: metadata.version(d) for d in ("marshmallow", "msgspec")}
    return "\n".join(
        [
            "## Validating event bodies (bench/bench_decode.py)",
            "",
            run_header(),
            f"- {args.rounds} rounds of {args.bodies} bodies of 100 events (the mix of "
            "bench_gateway.py), medians; marshmallow "
            f"{v['marshmallow']} schemas and msgspec {v['msgspec']} types, both generated from "
            "the catalogue with the same rules; both accept the same bodies and refuse a string "
            "quantity.",
            "",
            "| validator | µs per event | per round |",
            "|---|---:|---|",
            f"| `gateway.core.events.EventCodec.decode_body` (msgspec) | {res['msgspec_us']} | "
            f"{res['rounds_msgspec']} |",
            f"| marshmallow schemas (`json.loads` + `Schema.load`) | {res['marshmallow_us']} | "
            f"{res['rounds_marshmallow']} |",
            "",
            f"marshmallow takes {res['ratio']}x the time: at 30,000 events/s it alone would need "
            f"{res['marshmallow_us'] * 30_000 / 1e6:.1f} cores of this 2-core machine.",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
