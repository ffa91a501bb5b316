"""`Idempotency-Key` on recording allocations (portfolio_site.idempotency): applied by a mixin."""

from decimal import Decimal
from typing import Any

import pytest

from clients.tests.factories import ClientFactory
from holdings.models import Allocation
from holdings.tests.factories import AssetFactory
from ledger.models import Transaction
from ledger.tests.factories import TransactionFactory

pytestmark = pytest.mark.django_db
URL = "/api/v1/allocations/"


def buy(client_id: int, asset_id: int, quantity: str = "10") -> dict[str, Any]:
    return {
        "client": client_id,
        "asset": asset_id,
        "kind": "buy",
        "quantity": quantity,
        "price": "100",
        "date": "2026-06-02",
    }


def test_a_replayed_buy_is_recorded_and_settled_once(advisor, api) -> None:
    client = ClientFactory(advisor=advisor)
    TransactionFactory(client=client, amount=Decimal("5000"), currency="USD")
    asset = AssetFactory(currency="USD")
    headers = {"Idempotency-Key": "buy-1"}
    first = api(advisor).post(URL, buy(client.pk, asset.pk), format="json", headers=headers)
    again = api(advisor).post(URL, buy(client.pk, asset.pk), format="json", headers=headers)

    assert first.status_code == again.status_code == 201, first.content
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert Allocation.objects.count() == 1
    assert Transaction.objects.filter(kind="buy").count() == 1


def test_the_same_key_for_another_buy_is_refused_with_422(advisor, api) -> None:
    client = ClientFactory(advisor=advisor)
    TransactionFactory(client=client, amount=Decimal("5000"), currency="USD")
    asset = AssetFactory(currency="USD")
    headers = {"Idempotency-Key": "buy-1"}
    api(advisor).post(URL, buy(client.pk, asset.pk), format="json", headers=headers)
    other = api(advisor).post(URL, buy(client.pk, asset.pk, "11"), format="json", headers=headers)

    assert other.status_code == 422
    assert Allocation.objects.count() == 1
