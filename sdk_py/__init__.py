"""Python SDK (telemetry and marketer clients): see issue 4."""
