"""Numbers as people read them, for the admin's pages (changelists, change pages, inlines, panels, the dashboard).

- Money: rounded once, half-even, to the currency's minor unit (`portfolio_site.money.minor_unit`: the CLDR's
  table through Babel: JPY 0, USD 2, BHD 3), with thousands separators and the code: "191,000.00 USD".
- Quantities and prices: every stored digit that means something, none that does not: no trailing zeros, never an
  exponent ("1.2345", "100", "0.0000001"), with thousands separators.

Presentation only: what is stored never changes, and the API keeps its exact strings (it does not use this module).
"""

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from portfolio_site.money import present_amount

# What an empty cell shows, as the admin's own `empty_value_display` does.
EMPTY = "-"


def amount(value: Decimal, currency: str) -> str:
    """The amount rounded to the currency's minor unit with thousands separators, without the code: "1,234.57"."""
    rounded = present_amount(value, currency)
    if rounded == 0:
        rounded = abs(rounded)  # -0.004 USD reads "0.00", not "-0.00"
    # The "f" presentation type: fixed-point whatever the exponent (a Decimal("1E+3") would otherwise print so).
    return f"{rounded:,f}"


def money(value: Decimal | None, currency: str) -> str:
    """ "191,000.00 USD", "-1,235 JPY", "0.125 BHD"; "-" for no value."""
    if value is None:
        return EMPTY
    return f"{amount(value, currency)} {currency}"


def number(value: Decimal | None) -> str:
    """A quantity or a price without trailing zeros or exponent: 1.2345000000 → "1.2345", 100.0000 → "100",
    1234567.5 → "1,234,567.5", 0.0000001 → "0.0000001"; "-" for no value."""
    if value is None:
        return EMPTY
    if value == 0:
        return "0"  # normalize() keeps the sign and exponent of zero ("-0E-10"): zero is zero
    return f"{value.normalize():,f}"


def plain_decimal(value: Decimal | None) -> Decimal | None:
    """The same number without trailing zeros or exponent, for an input's initial value: 12.5000000000 is shown as
    12.5 (no thousands separator: it is posted back as typed), and it compares equal to the stored value, so an
    untouched row is not taken for a change."""
    if value is None:
        return None
    return Decimal(f"{value.normalize():f}") if value != 0 else Decimal("0")


def _attribute(obj: Any, path: str) -> Any:
    for name in path.split("."):
        obj = getattr(obj, name)
    return obj


def money_column(field: str, *, currency: str = "currency", description: str | None = None) -> Callable[..., str]:
    """A ModelAdmin method (assign it as a class attribute) showing `field` as money in the currency at the dotted
    path `currency` ("currency", "asset.currency"), sorted by the stored field. Select the related rows the path
    crosses (list_select_related), or each row costs a query."""

    def column(model_admin: Any, obj: Any) -> str:
        return money(getattr(obj, field), _attribute(obj, currency))

    return _described(column, description or field.replace("_", " "), field)


def number_column(field: str, *, description: str | None = None) -> Callable[..., str]:
    """A ModelAdmin method showing a quantity or price `field` without trailing zeros, sorted by the stored field."""

    def column(model_admin: Any, obj: Any) -> str:
        return number(getattr(obj, field))

    return _described(column, description or field.replace("_", " "), field)


def _described(column: Callable[..., str], description: str, ordering: str) -> Callable[..., str]:
    # What @admin.display sets, without importing the admin: models' __str__ use this module too, and they load
    # before the admin may be imported.
    column.short_description = description  # type: ignore[attr-defined]
    column.admin_order_field = ordering  # type: ignore[attr-defined]
    return column
