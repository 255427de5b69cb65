"""Marketers' audience counts (clause 3(2) item 1: statistics only): API key scope
``audiences`` for the queries, ``audiences_admin`` for their audit log.

* ``POST /v1/audiences/estimate`` ``{"filters": {"<dimension>": [values], ...,
  "active_within_days": 7|30|90}}`` -> ``{"estimate", "range", "below_threshold",
  "epsilon_spent", "budget_left"}``.
* ``POST /v1/audiences/breakdown`` ``{"by": "<dimension>", "filters": {...}}`` ->
  ``{"by", "cells": [{"value", "estimate", "range", "below_threshold"}], "epsilon_spent",
  "budget_left"}``.
* ``GET /v1/audiences/queries?since=<ms or ISO 8601>&limit=`` -> ``{"queries": [...]}``.

The guards (floor, noise, rounding, budget, same-day answers, difference checks, audit) are
the core's (``core/audiences/service.py``); docs/audiences.md explains them.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from ..core.audiences.service import Audiences
from ..core.errors import NotFound
from .paging import limit_of, since_of
from .payload import read_object
from .services import Services, services

bp = Blueprint("audiences", __name__)


def _audiences(svc: Services) -> Audiences:
    if svc.audiences is None:
        raise NotFound("this gateway's catalogue has no audiences")
    return svc.audiences


@bp.post("/v1/audiences/estimate")
def estimate() -> Response:
    return _query("estimate")


@bp.post("/v1/audiences/breakdown")
def breakdown() -> Response:
    return _query("breakdown")


def _query(kind: str) -> Response:
    svc = services()
    key = svc.apikeys.identify(request.headers.get("Authorization"), "audiences")
    body = read_object(request, max_bytes=16_384, max_depth=4)
    audiences = _audiences(svc)
    answer = audiences.estimate(key, body) if kind == "estimate" else audiences.breakdown(key, body)
    return jsonify(answer)


@bp.get("/v1/audiences/queries")
def queries() -> Response:
    svc = services()
    svc.apikeys.identify(request.headers.get("Authorization"), "audiences_admin")
    since = since_of(request.args.get("since", "0"))
    return jsonify({"queries": _audiences(svc).queries(since, limit_of(request.args))})
