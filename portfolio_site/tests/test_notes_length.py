"""Free-text notes are at most NOTES_MAX_LENGTH characters, whatever door writes them."""

import io

import pytest
from django.core.exceptions import ValidationError

from clients.models import Client
from clients.tests.factories import ClientFactory
from holdings.models import Allocation
from ledger.models import Transaction
from portfolio_site.imports.run import CommandLineActor, run_import
from portfolio_site.models import NOTES_MAX_LENGTH

pytestmark = pytest.mark.django_db
TOO_LONG = "x" * (NOTES_MAX_LENGTH + 1)


@pytest.mark.parametrize("model", [Client, Allocation, Transaction])
def test_model_validation_refuses_notes_longer_than_the_limit(model) -> None:
    field = model._meta.get_field("notes")
    field.clean("x" * NOTES_MAX_LENGTH, None)
    with pytest.raises(ValidationError):
        field.clean(TOO_LONG, None)


def test_the_api_refuses_client_notes_longer_than_the_limit_with_400_naming_notes(operations, api) -> None:
    client = ClientFactory()

    response = api(operations).patch(f"/api/v1/clients/{client.pk}/", {"notes": TOO_LONG}, format="json")

    assert response.status_code == 400, response.content
    assert list(response.json()) == ["notes"]


def test_the_api_refuses_transaction_notes_longer_than_the_limit_with_400_naming_notes(operations, api) -> None:
    client = ClientFactory()
    body = {"client": client.pk, "kind": "deposit", "amount": "1", "currency": "EUR", "date": "2026-01-05"}

    response = api(operations).post("/api/v1/transactions/", {**body, "notes": TOO_LONG}, format="json")

    assert response.status_code == 400, response.content
    assert list(response.json()) == ["notes"]
    assert not Transaction.objects.exists()


def test_an_import_refuses_notes_longer_than_the_limit_with_line_and_column() -> None:
    ClientFactory(email="ann@example.net")
    data = f"client,kind,amount,currency,date,reference,notes\nann@example.net,deposit,1,EUR,2026-01-05,,{TOO_LONG}\n"

    result = run_import(
        kind="transactions", stream=io.BytesIO(data.encode()), file_name="t.csv", actor=CommandLineActor()
    )

    assert [str(issue) for issue in result.issues] == [f"line 2, notes: longer than {NOTES_MAX_LENGTH} characters"]
