from decimal import Decimal
from typing import Any

from rest_framework import serializers

from portfolio_site.money import PLAIN_DECIMAL_HELP, is_plain_decimal, validate_currency, validate_storable


class LowercaseEmailField(serializers.EmailField):
    """Email addresses are unique case-insensitively and stored lower-case."""

    def to_internal_value(self, data: Any) -> str:
        return super().to_internal_value(data).strip().lower()


def must_be_positive(value: Decimal) -> None:
    if value <= 0:
        raise serializers.ValidationError("Must be greater than zero.")


def must_not_be_negative(value: Decimal) -> None:
    if value < 0:
        raise serializers.ValidationError("Cannot be negative.")


class ActorContextMixin:
    """Serializers that write through a service pass the requesting user as the actor."""

    context: dict[str, Any]

    @property
    def actor(self) -> Any:
        return self.context["request"].user


class CurrencyField(serializers.CharField):
    """An ISO 4217 code; accepted in any case, returned upper-case."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("help_text", "ISO 4217 currency code, e.g. EUR.")
        super().__init__(max_length=3, min_length=3, validators=[validate_currency], **kwargs)

    def to_internal_value(self, data: Any) -> str:
        return super().to_internal_value(data).strip().upper()


class PlainDecimalField(serializers.DecimalField):
    """DRF's DecimalField, less what Decimal() accepts that no one types as an amount: digits of other scripts,
    exponents, underscores (NaN and Infinity DRF refuses already), and less what the database would round
    (`validate_storable`). Every serializer's decimals use it."""

    default_error_messages = {"not_plain": f"Enter a number in {PLAIN_DECIMAL_HELP}."}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.validators.append(validate_storable)

    def to_internal_value(self, data: Any) -> Decimal:
        # JSON numbers arrive as int or float: their text is checked too (a float's may be in exponent form).
        if isinstance(data, bool) or not is_plain_decimal(str(data).strip()):
            self.fail("not_plain")
        return super().to_internal_value(data)
