"""The admin shows money in its currency's minor unit and quantities without trailing zeros; the rows keep every
stored digit."""

from decimal import Decimal

import pytest
from django.urls import reverse

from clients.tests.factories import ClientFactory
from holdings.tests.factories import AllocationFactory, AssetFactory, PriceFactory
from ledger.models import Transaction
from ledger.tests.factories import TransactionFactory

pytestmark = pytest.mark.django_db


def test_transaction_list_and_page_show_the_amount_rounded_half_even_with_its_code(client, superuser) -> None:
    client.force_login(superuser)
    tx = TransactionFactory(client=ClientFactory(base_currency="USD"), amount=Decimal("191234.5650"))

    listed = client.get(reverse("admin:ledger_transaction_changelist")).content.decode()
    page = client.get(reverse("admin:ledger_transaction_change", args=[tx.pk])).content.decode()

    assert '<td class="field-amount_shown">191,234.56 USD</td>' in listed
    assert "191,234.56 USD" in page
    assert Transaction.objects.get(pk=tx.pk).amount == Decimal("191234.5650")  # presented, not stored, rounded


def test_a_yen_amount_is_shown_whole(client, superuser) -> None:
    client.force_login(superuser)
    TransactionFactory(client=ClientFactory(base_currency="JPY"), amount=Decimal("1234567.5000"))

    assert "1,234,568 JPY" in client.get(reverse("admin:ledger_transaction_changelist")).content.decode()


def test_allocation_and_price_lists_show_quantities_and_prices_without_trailing_zeros(client, superuser) -> None:
    client.force_login(superuser)
    asset = AssetFactory(currency="BHD")
    AllocationFactory(
        asset=asset, quantity=Decimal("1250.5000000000"), price=Decimal("1.2345000000"), fees=Decimal("1.2345")
    )
    PriceFactory(asset=asset, close=Decimal("100.0000000000"))

    allocations = client.get(reverse("admin:holdings_allocation_changelist")).content.decode()
    prices = client.get(reverse("admin:holdings_price_changelist")).content.decode()

    assert "1,250.5<" in allocations
    assert "1.2345<" in allocations
    assert "1.234 BHD" in allocations  # fees in the asset's currency, three places, half-even
    assert ">100<" in prices
