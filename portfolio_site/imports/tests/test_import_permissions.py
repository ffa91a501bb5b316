"""Importing needs the model permissions of every write the file makes, at the command line and in the admin."""

import io
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from accounts.tests.factories import UserFactory
from clients.models import Portfolio
from clients.tests.factories import ClientFactory
from holdings.models import Asset
from holdings.tests.factories import AssetFactory
from portfolio_site.imports.models import ImportBatch

pytestmark = pytest.mark.django_db

IMPORT = "admin:imports_importbatch_import"
ASSETS = "ticker,exchange,name,currency,asset_type,isin\nSAP,XETR,Renamed SE,EUR,equity,\nNEW,XETR,New AG,EUR,equity,\n"


def assets_file(tmp_path: Path) -> Path:
    path = tmp_path / "assets.csv"
    path.write_text(ASSETS, encoding="utf-8")
    return path


def import_assets(path: Path, user: Any) -> str:
    out = io.StringIO()
    call_command("import", "assets", str(path), "--quiet", "--user", user.email, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_an_advisor_may_not_create_or_rename_assets_from_the_command_line(advisor, tmp_path):
    AssetFactory(ticker="SAP", exchange="XETR", name="SAP SE", currency="EUR")

    with pytest.raises(CommandError) as refused:
        import_assets(assets_file(tmp_path), advisor)

    assert str(refused.value) == (
        f"--user {advisor.email}: Importing assets needs the permission(s) holdings.add_asset, "
        "holdings.change_asset; missing: holdings.add_asset, holdings.change_asset."
    )
    assert list(Asset.objects.values_list("ticker", "name")) == [("SAP", "SAP SE")]
    assert not ImportBatch.objects.exists()


@pytest.mark.parametrize("role", ["operations", "superuser"])
def test_operations_and_superusers_may_import_assets_from_the_command_line(role, request, tmp_path):
    AssetFactory(ticker="SAP", exchange="XETR", name="SAP SE", currency="EUR")

    out = import_assets(assets_file(tmp_path), request.getfixturevalue(role))

    assert "created 1, updated 1" in out
    assert sorted(Asset.objects.values_list("ticker", "name")) == [("NEW", "New AG"), ("SAP", "Renamed SE")]


def test_an_advisor_may_still_import_the_kinds_their_role_may_write(advisor, tmp_path):
    path = tmp_path / "clients.csv"
    path.write_text(f"email,name,advisor,base_currency\nmine@example.org,Mine,{advisor.email},EUR\n", "utf-8")

    out = io.StringIO()
    call_command("import", "clients", str(path), "--quiet", "--user", advisor.email, stdout=out)

    assert "created 1" in out.getvalue()


def test_an_inactive_user_may_import_nothing(operations, tmp_path):
    operations.is_active = False
    operations.save()

    with pytest.raises(CommandError, match="Importing assets needs"):
        import_assets(assets_file(tmp_path), operations)


def runs_imports_only() -> Any:
    """Staff who may open the Import page but may not write assets."""
    user = UserFactory(is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="run_import"))
    return user


def upload_assets(client: Any) -> Any:
    data = SimpleUploadedFile("assets.csv", ASSETS.encode(), "text/csv")
    return client.post(reverse(IMPORT), {"kind": "assets", "file": data})


def test_the_admin_import_page_refuses_a_kind_the_user_may_not_write(client):
    client.force_login(runs_imports_only())
    AssetFactory(ticker="SAP", exchange="XETR", name="SAP SE", currency="EUR")

    response = upload_assets(client)

    assert response.status_code == 200
    assert "Importing assets needs" in response.context["form"].errors["kind"][0]
    assert response.context["result"] is None
    assert not ImportBatch.objects.exists()
    assert list(Asset.objects.values_list("name", flat=True)) == ["SAP SE"]


def test_the_admin_import_refuses_the_confirmation_once_the_permission_is_gone(client, operations):
    client.force_login(operations)
    assert upload_assets(client).context["result"].ok
    operations.groups.clear()
    operations.user_permissions.add(Permission.objects.get(codename="run_import"))

    sha256 = client.session[f"imports.pending.{operations.pk}"]["sha256"]
    response = client.post(reverse(IMPORT), {"_confirm": "Confirm import", "sha256": sha256}, follow=True)

    assert "Importing assets needs" in " ".join(str(m) for m in response.context["messages"])
    assert not Asset.objects.exists()
    assert list(ImportBatch.objects.values_list("outcome", flat=True)) == ["dry_run"]


def test_importing_portfolios_needs_the_permissions_to_add_and_change_portfolios(tmp_path):
    ClientFactory(email="ann@example.net")
    path = tmp_path / "portfolios.csv"
    path.write_text("client,name\nann@example.net,ISA\n", encoding="utf-8")
    user = UserFactory(is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="add_portfolio"))

    with pytest.raises(CommandError) as refused:
        call_command("import", "portfolios", str(path), "--quiet", "--user", user.email, stdout=io.StringIO())
    user.user_permissions.add(Permission.objects.get(codename="change_portfolio"))
    user = type(user).objects.get(pk=user.pk)  # permissions are cached on the instance
    user.groups.add(*Group.objects.filter(name="Operations"))  # to see the client
    out = io.StringIO()
    call_command("import", "portfolios", str(path), "--quiet", "--user", user.email, stdout=out)

    assert str(refused.value) == (
        f"--user {user.email}: Importing portfolios needs the permission(s) clients.add_portfolio, "
        "clients.change_portfolio; missing: clients.change_portfolio."
    )
    assert "created 1" in out.getvalue()
    assert Portfolio.objects.filter(name="ISA").exists()
