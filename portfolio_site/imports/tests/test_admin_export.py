"""The admin's export: the selected rows or the filtered list, as the kind's import file, scoped like the list."""

import csv
import io
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.admin import helpers
from django.core.management import call_command
from django.urls import reverse

from clients.models import Client
from clients.tests.factories import ClientFactory
from ledger.models import Transaction
from ledger.tests.factories import TransactionFactory
from portfolio_site.imports.formats import FORMATS, format_for_model
from portfolio_site.imports.run import run_import

pytestmark = pytest.mark.django_db


def _body(response: Any) -> str:
    assert response.status_code == 200, response.status_code
    assert response["Content-Type"].startswith("text/csv")
    return b"".join(response.streaming_content).decode()


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _export_selected(client: Any, model: type[Any], ids: list[int]) -> Any:
    opts = model._meta
    return client.post(
        reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"),
        {"action": "export_selected", helpers.ACTION_CHECKBOX_NAME: [str(pk) for pk in ids]},
    )


def test_every_kind_of_the_import_engine_is_exported_from_its_admin_list() -> None:
    # A kind whose model has no admin page (or the reverse mapping broken) would silently lose the export.
    for kind, format_class in FORMATS.items():
        assert format_class.model in admin.site._registry, kind
        assert format_for_model(format_class.model) is format_class


def test_exporting_selected_clients_writes_exactly_them_in_the_import_columns_escaped_as_the_command_does(
    client: Any, superuser: Any
) -> None:
    chosen = ClientFactory(notes="=HYPERLINK(1)", phone="+44 20 7946 0958")
    ClientFactory()  # not selected
    client.force_login(superuser)

    text = _body(_export_selected(client, Client, [chosen.pk]))

    command = io.StringIO()
    call_command("export", "clients", stdout=command)
    header, *lines = command.getvalue().splitlines()
    expected = [header, *(line for line in lines if line.startswith(chosen.email))]
    assert text.splitlines() == expected
    [row] = _rows(text)
    assert row["notes"] == "'=HYPERLINK(1)"  # formula-safe, as every export
    assert row["phone"] == "'+44 20 7946 0958"


def test_export_all_filtered_streams_the_lists_filtered_rows_only(client: Any, superuser: Any) -> None:
    inactive = ClientFactory(is_active=False)
    ClientFactory(is_active=True)
    client.force_login(superuser)

    changelist = client.get(reverse("admin:clients_client_changelist"), {"is_active__exact": "0"})
    assert changelist.status_code == 200
    link = reverse("admin:clients_client_export") + "?is_active__exact=0"
    assert link in changelist.content.decode()

    assert [row["email"] for row in _rows(_body(client.get(link)))] == [inactive.email]


def test_export_all_filtered_keeps_the_lists_search(client: Any, superuser: Any) -> None:
    wanted = TransactionFactory(reference="WIRE-123")
    TransactionFactory(reference="OTHER-9")
    client.force_login(superuser)

    rows = _rows(_body(client.get(reverse("admin:ledger_transaction_export"), {"q": "WIRE-123"})))

    assert [(row["reference"], row["client"]) for row in rows] == [("WIRE-123", wanted.client.email)]


def test_an_advisor_cannot_export_another_advisors_rows_even_by_posting_their_ids(
    client: Any, advisor: Any, other_advisor: Any
) -> None:
    own = TransactionFactory(client=ClientFactory(advisor=advisor), reference="MINE")
    others = TransactionFactory(client=ClientFactory(advisor=other_advisor), reference="THEIRS")
    client.force_login(advisor)

    selected = _rows(_body(_export_selected(client, Transaction, [own.pk, others.pk])))
    everything = _rows(_body(client.get(reverse("admin:ledger_transaction_export"))))
    clients = _rows(_body(_export_selected(client, Client, [own.client_id, others.client_id])))

    assert [row["reference"] for row in selected] == ["MINE"]
    assert [row["reference"] for row in everything] == ["MINE"]
    assert [row["email"] for row in clients] == [own.client.email]


def test_a_user_without_the_view_permission_gets_no_export(client: Any, nobody: Any) -> None:
    client.force_login(nobody)

    assert client.get(reverse("admin:clients_client_export")).status_code == 403


def test_an_exported_file_imports_back(client: Any, superuser: Any) -> None:
    exported = ClientFactory(main_portfolio=None, name="Ada Lovelace", notes="-starts with a minus")
    client.force_login(superuser)
    text = _body(_export_selected(client, Client, [exported.pk]))
    values = Client.objects.filter(pk=exported.pk).values("email", "name", "advisor", "phone", "notes").get()
    exported.delete()

    result = run_import(kind="clients", stream=io.BytesIO(text.encode()), file_name="clients.csv", actor=superuser)

    assert result.ok, [str(issue) for issue in result.issues]
    assert Client.objects.values("email", "name", "advisor", "phone", "notes").get() == values
