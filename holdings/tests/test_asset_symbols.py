"""An asset's symbol at each market data source: one per asset and source, one asset per symbol at a source;
kept in the admin on the asset's page (through the services) and shown by the asset API."""

from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from holdings.models import AssetSymbol
from holdings.services import asset_symbol_create
from holdings.tests.factories import AssetFactory
from portfolio_site.testing import admin_messages, refused_by

pytestmark = pytest.mark.django_db


def test_database_refuses_one_symbol_at_one_source_for_two_assets() -> None:
    AssetSymbol.objects.create(asset=AssetFactory(), source="prices", symbol="sap.de")
    with refused_by("holdings_assetsymbol_source_symbol_unique"):
        AssetSymbol.objects.create(asset=AssetFactory(), source="prices", symbol="sap.de")


def test_database_refuses_two_symbols_of_one_asset_at_one_source() -> None:
    asset = AssetFactory()
    AssetSymbol.objects.create(asset=asset, source="prices", symbol="sap.de")
    with refused_by("holdings_assetsymbol_asset_source_unique"):
        AssetSymbol.objects.create(asset=asset, source="prices", symbol="SAP.DE")


def test_one_symbol_may_name_different_assets_at_different_sources() -> None:
    AssetSymbol.objects.create(asset=AssetFactory(), source="stooq", symbol="ABC")
    AssetSymbol.objects.create(asset=AssetFactory(), source="yahoo", symbol="ABC")

    assert AssetSymbol.objects.count() == 2


@pytest.mark.parametrize(("source", "symbol"), [("prices", ""), ("", "SAP"), ("Prices", "SAP"), ("my source", "SAP")])
def test_database_refuses_a_blank_symbol_or_a_source_name_that_settings_could_not_spell(
    source: str, symbol: str
) -> None:
    with refused_by("holdings_assetsymbol_named"):
        AssetSymbol.objects.create(asset=AssetFactory(), source=source, symbol=symbol)


def test_the_service_trims_the_symbol_and_lower_cases_the_source_name() -> None:
    row = asset_symbol_create(asset=AssetFactory(), source=" Prices ", symbol=" sap.de ")

    assert (row.source, row.symbol) == ("prices", "sap.de")


def test_the_service_refuses_a_duplicate_with_the_constraints_message() -> None:
    asset_symbol_create(asset=AssetFactory(), source="prices", symbol="sap.de")

    with pytest.raises(ValidationError, match="Another asset already has this symbol at this source"):
        asset_symbol_create(asset=AssetFactory(), source="prices", symbol="sap.de")


def _asset_form(asset: Any, *rows: dict[str, Any], initial: int = 0) -> dict[str, Any]:
    data = {
        "ticker": asset.ticker,
        "name": asset.name,
        "exchange": asset.exchange,
        "currency": asset.currency,
        "asset_type": asset.asset_type,
        "isin": asset.isin,
        "symbols-TOTAL_FORMS": str(len(rows)),
        "symbols-INITIAL_FORMS": str(initial),
        # The page's images inline, empty.
        "images-TOTAL_FORMS": "0",
        "images-INITIAL_FORMS": "0",
    }
    for index, row in enumerate(rows):
        data.update({f"symbols-{index}-{name}": value for name, value in row.items()})
    return data


def test_symbols_are_added_changed_and_deleted_on_the_assets_admin_page(client: Any, operations: Any) -> None:
    asset = AssetFactory(ticker="SAP", exchange="XETR", currency="EUR")
    client.force_login(operations)
    url = reverse("admin:holdings_asset_change", args=[asset.pk])

    added = client.post(url, _asset_form(asset, {"source": "prices", "symbol": "sap.de", "asset": asset.pk}))
    assert added.status_code == 302
    row = AssetSymbol.objects.get()
    assert (row.asset, row.source, row.symbol) == (asset, "prices", "sap.de")

    changed = client.post(
        url, _asset_form(asset, {"id": row.pk, "source": "prices", "symbol": "SAP.DE", "asset": asset.pk}, initial=1)
    )
    assert changed.status_code == 302
    assert AssetSymbol.objects.get().symbol == "SAP.DE"

    deleted = client.post(
        url,
        _asset_form(
            asset, {"id": row.pk, "source": "prices", "symbol": "SAP.DE", "asset": asset.pk, "DELETE": "on"}, initial=1
        ),
    )
    assert deleted.status_code == 302
    assert not AssetSymbol.objects.exists()


def test_an_asset_added_in_the_admin_comes_with_its_symbols(client: Any, operations: Any) -> None:
    client.force_login(operations)
    form = _asset_form(AssetFactory.build(ticker="SAP", exchange="XETR", currency="EUR", isin=""))
    form.update({"symbols-TOTAL_FORMS": "1", "symbols-0-source": "Prices", "symbols-0-symbol": "sap.de"})

    response = client.post(reverse("admin:holdings_asset_add"), form)

    assert response.status_code == 302
    row = AssetSymbol.objects.select_related("asset").get()
    assert (row.asset.ticker, row.source, row.symbol) == ("SAP", "prices", "sap.de")


def test_a_symbol_another_asset_has_at_the_source_is_refused_on_the_page(client: Any, operations: Any) -> None:
    AssetSymbol.objects.create(asset=AssetFactory(), source="prices", symbol="sap.de")
    asset = AssetFactory(ticker="SAP", exchange="XETR", currency="EUR")
    client.force_login(operations)

    response = client.post(
        reverse("admin:holdings_asset_change", args=[asset.pk]),
        _asset_form(asset, {"source": "prices", "symbol": "sap.de", "asset": asset.pk}),
    )

    assert response.status_code == 200
    assert "Another asset already has this symbol at this source" in str(
        response.context["inline_admin_formsets"][0].formset.errors
    )
    assert AssetSymbol.objects.count() == 1
    assert admin_messages(response) == []


def test_an_advisor_sees_an_assets_symbols_but_cannot_add_one(client: Any, advisor: Any) -> None:
    asset = AssetFactory()
    AssetSymbol.objects.create(asset=asset, source="prices", symbol="XYZ")
    client.force_login(advisor)

    response = client.get(reverse("admin:holdings_asset_change", args=[asset.pk]))

    assert response.status_code == 200
    [inline] = [inline for inline in response.context["inline_admin_formsets"] if inline.formset.model is AssetSymbol]
    assert inline.has_view_permission
    assert not inline.has_add_permission
    assert "XYZ" in response.content.decode()


def test_the_asset_api_shows_each_symbol_and_its_source(advisor: Any, api: Any) -> None:
    asset = AssetFactory()
    AssetSymbol.objects.create(asset=asset, source="prices", symbol="xyz.us")
    AssetSymbol.objects.create(asset=asset, source="ecb", symbol="XYZ")
    response = api(advisor).get(f"/api/v1/assets/{asset.pk}/")

    assert response.status_code == 200
    assert response.json()["symbols"] == [{"source": "ecb", "symbol": "XYZ"}, {"source": "prices", "symbol": "xyz.us"}]


def test_a_new_symbol_shows_in_the_asset_api_at_once(
    operations: Any, api: Any, django_capture_on_commit_callbacks: Any
) -> None:
    asset = AssetFactory()
    client = api(operations)
    assert client.get(f"/api/v1/assets/{asset.pk}/").json()["symbols"] == []

    with django_capture_on_commit_callbacks(execute=True):
        asset_symbol_create(asset=asset, source="prices", symbol="xyz.us")

    assert client.get(f"/api/v1/assets/{asset.pk}/").json()["symbols"] == [{"source": "prices", "symbol": "xyz.us"}]
