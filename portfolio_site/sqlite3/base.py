"""Django's SQLite backend, made exact for money.

SQLite keeps a decimal column as REAL (15 significant digits), so its SUM adds floats. This backend registers
`exact_decimal_sum`, an aggregate that adds the rows as Decimals and answers text, and reads that text back as
the exact Decimal it is (`portfolio_site.money.ExactSum` uses it). Everything else is Django's backend.
"""

import decimal
import sqlite3
from collections.abc import Callable
from typing import Any

from django.db.backends.sqlite3 import base, operations

# SQLite's REAL holds 15 significant decimal digits exactly; Django reads decimals back through this context too.
_FROM_REAL = decimal.Context(prec=15)
# Wide enough that adding any number of 30-digit quantities never rounds (and says so if it ever would).
_SUM_CONTEXT = decimal.Context(prec=200, traps=[decimal.Inexact, decimal.InvalidOperation, decimal.Overflow])


def _as_decimal(value: int | float | str | bytes) -> decimal.Decimal:
    if isinstance(value, float):
        return _FROM_REAL.create_decimal_from_float(value)
    if isinstance(value, bytes):
        value = value.decode()
    return decimal.Decimal(value)


class ExactDecimalSum:
    """The SQLite aggregate `exact_decimal_sum(x)`: SUM's semantics (NULLs skipped, NULL when no row), in Decimal."""

    def __init__(self) -> None:
        self.total: decimal.Decimal | None = None

    def step(self, value: Any) -> None:
        if value is None:
            return
        term = _as_decimal(value)
        self.total = term if self.total is None else _SUM_CONTEXT.add(self.total, term)

    def finalize(self) -> str | None:
        # Text, never REAL: a float would round the exact total again.
        return None if self.total is None else str(self.total)


class DatabaseOperations(operations.DatabaseOperations):
    def get_decimalfield_converter(self, expression: Any) -> Callable[..., Any]:
        from_real = super().get_decimalfield_converter(expression)

        def converter(value: Any, expression: Any, connection: Any) -> Any:
            # Text only comes from exact_decimal_sum (a stored decimal is REAL or INTEGER): already exact.
            if isinstance(value, str):
                return decimal.Decimal(value)
            return from_real(value, expression, connection)

        return converter


class DatabaseWrapper(base.DatabaseWrapper):
    ops_class = DatabaseOperations

    def get_new_connection(self, conn_params: dict[str, Any]) -> sqlite3.Connection:
        conn = super().get_new_connection(conn_params)
        conn.create_aggregate("exact_decimal_sum", 1, ExactDecimalSum)  # type: ignore[arg-type]
        return conn
