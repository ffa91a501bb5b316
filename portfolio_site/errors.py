"""Domain errors that services raise and every door (API, admin, commands) reports in its own way.

Invalid input is Django's `ValidationError` (400) and a caller acting outside its scope is Django's
`PermissionDenied` (403); what is left is a request that is well-formed but clashes with the current state.
"""

from decimal import Decimal
from typing import Any


class ConflictError(Exception):
    """The request is valid but the current state refuses it (HTTP 409): not enough cash, not enough units."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InsufficientCash(ConflictError):
    """Not enough free cash (held less on hold) for what was asked: `needed` of `currency`, `available` free,
    `missing` short (needed less available)."""

    def __init__(self, message: str, *, currency: str, needed: Decimal, available: Decimal, field: str | None = None):
        super().__init__(message, field=field)
        self.currency = currency
        self.needed = needed
        self.available = available
        self.missing = needed - available


class InsufficientUnits(ConflictError):
    """Not enough free units (held less on hold) of `asset` (a `holdings.models.Asset`) for what was asked: `needed`,
    `available` free, `missing` short (needed less available)."""

    def __init__(self, message: str, *, asset: Any, needed: Decimal, available: Decimal, field: str | None = None):
        super().__init__(message, field=field)
        self.asset = asset
        self.needed = needed
        self.available = available
        self.missing = needed - available
