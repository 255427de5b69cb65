"""The Python SDK: consent and telemetry for the APP (or any Python backend).

Importable without the gateway's server-side dependencies: it needs ``httpx`` only.
"""

from .backend import (
    AccountsClient,
    AudiencesClient,
    Breakdown,
    Cell,
    Estimate,
    SavedLogin,
    SavedLoginClient,
    SavedLoginReused,
    SendersClient,
)
from .buffer import MemoryBuffer, SpoolBuffer
from .device import DeviceInfo
from .errors import (
    BudgetExhausted,
    GatewayRefused,
    GatewayUnavailable,
    SdkError,
    TooCloseToEarlierQuery,
)
from .policy import ConsentState, Policy
from .retry import Backoff
from .telemetry import Stats, TelemetryClient

__all__ = [
    "AccountsClient",
    "AudiencesClient",
    "Backoff",
    "Breakdown",
    "BudgetExhausted",
    "Cell",
    "ConsentState",
    "DeviceInfo",
    "Estimate",
    "GatewayRefused",
    "GatewayUnavailable",
    "MemoryBuffer",
    "Policy",
    "SavedLogin",
    "SavedLoginClient",
    "SavedLoginReused",
    "SdkError",
    "SendersClient",
    "SpoolBuffer",
    "Stats",
    "TelemetryClient",
    "TooCloseToEarlierQuery",
]
