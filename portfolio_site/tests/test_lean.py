"""lean.represent gives what the serializer's .data gives, for objects and for plain `values()` rows."""

import datetime
import zoneinfo
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from django.utils import timezone
from rest_framework import serializers

from portfolio_site.api.fields import PlainDecimalField
from portfolio_site.api.lean import LeanListSerializer, columns, represent

PARIS = zoneinfo.ZoneInfo("Europe/Paris")


class RowSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    amount = PlainDecimalField(max_digits=20, decimal_places=4)
    price = serializers.DecimalField(max_digits=6, decimal_places=2)
    at = serializers.DateTimeField()
    on = serializers.DateField()
    flag = serializers.BooleanField()
    currency = serializers.CharField(source="asset.currency")

    class Meta:
        list_serializer_class = LeanListSerializer


ROWS = [
    {
        "id": 1,
        "name": "plain",
        "amount": Decimal("1234.5"),
        "price": Decimal("9.995"),  # rounded by the quantize
        "at": datetime.datetime(2026, 3, 2, 9, 30, tzinfo=datetime.UTC),
        "on": datetime.date(2026, 3, 2),
        "flag": True,
        "asset": {"currency": "EUR"},
    },
    {
        "id": True,  # not an int: the field's own conversion
        "name": 12,
        "amount": 3,
        "price": Decimal("0.125"),
        "at": datetime.datetime(2026, 7, 1, 23, 59, 59, 123456, tzinfo=PARIS),
        "on": datetime.date(1999, 12, 31),
        "flag": False,
        "asset": {"currency": "USD"},
    },
    {
        "id": 3,
        "name": "",
        "amount": None,
        "price": Decimal("-0.001"),
        "at": datetime.datetime(2026, 1, 1),  # noqa: DTZ001 (naive: DRF makes it aware in the current zone)
        "on": None,
        "flag": None,
        "asset": {"currency": None},
    },
]


def as_object(row: dict[str, Any]) -> Any:
    return SimpleNamespace(**{**row, "asset": SimpleNamespace(**row["asset"])})


def as_values_row(row: dict[str, Any]) -> dict[str, Any]:
    flat = {key: value for key, value in row.items() if key != "asset"}
    return {**flat, "asset__currency": row["asset"]["currency"]}


@pytest.mark.parametrize("zone", ["UTC", "Europe/Paris"])
@pytest.mark.parametrize("shape", [as_object, as_values_row, dict])
def test_represent_matches_the_serializers_data(shape: Any, zone: str) -> None:
    with timezone.override(zone):
        for row in ROWS:
            expected = dict(RowSerializer(as_object(row)).data)
            assert represent(RowSerializer, shape(row), {}) == expected
        assert RowSerializer([shape(row) for row in ROWS], many=True).data == [
            dict(RowSerializer(as_object(row)).data) for row in ROWS
        ]


def test_columns_name_the_values_of_each_field_and_refuse_what_needs_the_object() -> None:
    assert columns(RowSerializer) == ("id", "name", "amount", "price", "at", "on", "flag", "asset__currency")

    class Whole(serializers.Serializer):
        everything = serializers.CharField(source="*")

    assert columns(Whole) is None


def test_a_list_is_compiled_once_per_serializer_and_time_zone_and_never_for_one_that_reads_the_context() -> None:
    class Contextual(RowSerializer):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            if not self.context.get("show_name"):
                self.fields.pop("name")

        class Meta:
            list_serializer_class = LeanListSerializer

    rows = [as_values_row(ROWS[0])]
    with timezone.override("UTC"):
        utc = RowSerializer(rows, many=True).data[0]["at"]
    with timezone.override("Europe/Paris"):
        assert RowSerializer(rows, many=True).data[0]["at"] != utc
    assert "name" not in Contextual(rows, many=True).data[0]
    assert "name" in Contextual(rows, many=True, context={"show_name": True}).data[0]
