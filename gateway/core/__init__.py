"""The gateway's core: what the policy promises, with neither Flask nor a store in sight.

The catalogue (the only place that knows purposes and fields), consent rules, the ledger's
hashing and receipts, enrichment, splitting events into per-purpose parts, rate-limit rules,
and the ports (``ports.py``) through which it asks storage for what it keeps. The web layer
calls it; the storage layer implements its ports and returns its records (``records.py``).
All its exceptions are in ``errors.py``. ``import-linter`` keeps Flask and redis out.
"""
