"""The gateway's web layer: Flask blueprints that turn HTTP into calls on the core.

Each module is one blueprint (or one concern of them: identity, errors, paging, payloads);
``gateway.app.create_app`` registers them. It never imports redis or the storage layer: what it
needs of a store comes through ``Services`` (the core's ports), so one uniform refusal body and
the status codes live here and nowhere else.
"""
