"""The transactions import locks its portfolios through the services' own lock, inside the run's transaction: a
client the importer may no longer see when the rows are written is refused, whatever the index said when the file
was read."""

import io
from typing import Any

import pytest

from clients.models import Client
from clients.services import NOT_YOURS
from clients.tests.factories import ClientFactory
from ledger.importers import TransactionFormat
from ledger.models import Transaction
from portfolio_site.imports.run import ImportResult, run_import

pytestmark = pytest.mark.django_db

HEADER = "client,kind,amount,currency,date,reference,notes"


def run(rows: list[str], *, actor: Any, **options: Any) -> ImportResult:
    data = "\n".join([HEADER, *rows]) + "\n"
    return run_import(
        kind="transactions", stream=io.BytesIO(data.encode()), file_name="cash.csv", actor=actor, **options
    )


@pytest.fixture
def reassigned_before_write(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Client, Any]]:
    """(client, new advisor) pairs moved when the first chunk is about to be written: after the file was read
    and its rows resolved against what the importer could see then."""
    moves: list[tuple[Client, Any]] = []
    original = TransactionFormat.write_chunk

    def write_chunk(self: TransactionFormat, chunk: Any) -> None:
        for client, advisor in moves:
            Client.objects.filter(pk=client.pk).update(advisor=advisor)
        original(self, chunk)

    monkeypatch.setattr(TransactionFormat, "write_chunk", write_chunk)
    return moves


def test_rows_of_a_client_reassigned_after_the_file_was_read_are_refused(
    advisor, other_advisor, reassigned_before_write
):
    ann = ClientFactory(email="ann@example.net", advisor=advisor)
    ClientFactory(email="bob@example.net", advisor=advisor)
    reassigned_before_write.append((ann, other_advisor))

    result = run(
        [
            "ann@example.net,deposit,100,EUR,2026-01-05,A-1,",
            "bob@example.net,deposit,100,EUR,2026-01-05,B-1,",
            "ann@example.net,deposit,5,EUR,2026-01-06,,",
        ],
        actor=advisor,
    )

    assert not result.ok
    assert [str(issue) for issue in result.issues] == [f"line 2, client: {NOT_YOURS}", f"line 4, client: {NOT_YOURS}"]
    assert not Transaction.objects.exists()


def test_with_skip_invalid_the_other_clients_rows_are_still_posted(advisor, other_advisor, reassigned_before_write):
    ann = ClientFactory(email="ann@example.net", advisor=advisor)
    bob = ClientFactory(email="bob@example.net", advisor=advisor)
    reassigned_before_write.append((ann, other_advisor))

    result = run(
        ["ann@example.net,deposit,100,EUR,2026-01-05,A-1,", "bob@example.net,deposit,100,EUR,2026-01-05,B-1,"],
        actor=advisor,
        skip_invalid=True,
    )

    assert result.ok
    assert [str(issue) for issue in result.issues] == [f"line 2, client: {NOT_YOURS}"]
    assert list(Transaction.objects.values_list("client_id", "reference")) == [(bob.pk, "B-1")]
    assert (result.batch.rows_created, result.batch.rows_rejected) == (1, 1)


def test_a_row_already_posted_in_a_portfolio_no_longer_visible_is_refused_not_skipped(
    advisor, other_advisor, reassigned_before_write
):
    """Skipping it would tell the importer what was posted in a portfolio they may no longer see."""
    ann = ClientFactory(email="ann@example.net", advisor=advisor)
    first = run(["ann@example.net,deposit,100,EUR,2026-01-05,A-1,"], actor=advisor)
    assert first.ok, first.issues
    reassigned_before_write.append((ann, other_advisor))

    again = run(["ann@example.net,deposit,100,EUR,2026-01-05,A-1,"], actor=advisor)

    assert [str(issue) for issue in again.issues] == [f"line 2, client: {NOT_YOURS}"]
    assert Transaction.objects.count() == 1


@pytest.mark.postgres
def test_the_portfolios_are_locked_by_the_services_lock_query(advisor):
    """One lock query of the services' shape (visibility filter, FOR UPDATE) per portfolio, not SQL of its own."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    ClientFactory(email="ann@example.net", advisor=advisor)
    with CaptureQueriesContext(connection) as queries:
        result = run(["ann@example.net,deposit,100,EUR,2026-01-05,A-1,"], actor=advisor)

    assert result.ok, result.issues
    locks = [q["sql"] for q in queries.captured_queries if "FOR UPDATE" in q["sql"]]
    assert len(locks) == 1
    assert '"clients_client"."advisor_id"' in locks[0]  # the visibility re-check, inside the transaction
