"""An asset's lot size (the units it trades in, 1 by default) through each door: the API, the admin, and the CSV
import, where the column is optional so that files from before it still import and keep the lots already set."""

import io
from decimal import Decimal
from typing import Any

import pytest
from django.urls import reverse

from holdings.importers import AssetFormat
from holdings.models import Asset
from holdings.tests.factories import AssetFactory
from portfolio_site.imports.exporting import export_csv
from portfolio_site.imports.run import CommandLineActor, ImportResult, run_import

pytestmark = pytest.mark.django_db

D = Decimal


def run(text: str) -> ImportResult:
    return run_import(kind="assets", stream=io.BytesIO(text.encode()), file_name="assets.csv", actor=CommandLineActor())


def test_an_import_with_a_lot_size_column_sets_it_and_an_empty_cell_means_one() -> None:
    result = run(
        "ticker,exchange,name,currency,asset_type,isin,lot_size\n"
        "SAP,XETR,SAP SE,EUR,equity,,100\nBTC,,Bitcoin,USD,crypto,,\n"
    )
    assert result.ok, [str(issue) for issue in result.issues]
    assert dict(Asset.objects.values_list("ticker", "lot_size")) == {"SAP": D("100"), "BTC": D("1")}


def test_a_file_from_before_the_lot_size_column_still_imports_and_keeps_the_lots_set() -> None:
    AssetFactory(ticker="SAP", exchange="XETR", name="SAP AG", currency="EUR", lot_size=D("100"))
    result = run("ticker,exchange,name,currency,asset_type,isin\nSAP,XETR,SAP SE,EUR,equity,\nETH,,Ether,USD,crypto,\n")
    assert result.ok, [str(issue) for issue in result.issues]
    assert dict(Asset.objects.values_list("ticker", "lot_size")) == {"SAP": D("100"), "ETH": D("1")}


def test_a_lot_size_of_zero_is_refused_with_its_line_and_column() -> None:
    result = run("ticker,exchange,name,currency,asset_type,isin,lot_size\nSAP,XETR,SAP SE,EUR,equity,,0\n")
    assert [str(issue) for issue in result.issues] == ["line 2, lot_size: must be greater than 0"]


def test_the_export_carries_the_lot_size_for_the_import_to_read_back() -> None:
    AssetFactory(ticker="SAP", exchange="XETR", lot_size=D("0.5"))
    out = io.StringIO()
    export_csv(AssetFormat, out)
    header, row = out.getvalue().splitlines()
    assert header.endswith(",lot_size")
    assert row.endswith(",0.5")


def test_the_api_sets_a_lot_size_and_refuses_zero(operations: Any, api: Any) -> None:
    body = {"ticker": "SAP", "exchange": "XETR", "name": "SAP SE", "currency": "EUR", "lot_size": "10"}
    created = api(operations).post("/api/v1/assets/", body, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["lot_size"] == "10.0000000000"
    refused = api(operations).post("/api/v1/assets/", {**body, "ticker": "SAP2", "lot_size": "0"}, format="json")
    assert refused.status_code == 400
    assert "lot_size" in refused.json()


def test_the_admin_keeps_an_assets_lot_size_when_the_form_leaves_it_empty(client: Any, operations: Any) -> None:
    asset = AssetFactory(ticker="SAP", exchange="XETR", name="SAP SE", currency="EUR", lot_size=D("100"))
    client.force_login(operations)
    form = {"ticker": "SAP", "exchange": "XETR", "name": "SAP SE (renamed)", "currency": "EUR", "asset_type": "equity"}
    form |= {"isin": "", "lot_size": "", "symbols-TOTAL_FORMS": "0", "symbols-INITIAL_FORMS": "0"}
    form |= {"images-TOTAL_FORMS": "0", "images-INITIAL_FORMS": "0"}
    response = client.post(reverse("admin:holdings_asset_change", args=[asset.pk]), form)
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    asset.refresh_from_db()
    assert (asset.name, asset.lot_size) == ("SAP SE (renamed)", D("100"))
