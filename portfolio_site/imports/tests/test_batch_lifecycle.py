"""An ImportBatch exists from the start of its run (running), and ends succeeded, failed or dry run; the admin
shows how many stored rows came from it; the clients upsert locks the rows it may change."""

import io
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from clients.importers import ClientFormat
from clients.tests.factories import ClientFactory
from ledger.importers import TransactionFormat
from portfolio_site.imports.models import ImportBatch
from portfolio_site.imports.run import CommandLineActor, ImportResult, run_import

pytestmark = pytest.mark.django_db

CASH = "client,kind,amount,currency,date,reference,notes\n"


def run(kind: str, text: str, **options: Any) -> ImportResult:
    return run_import(
        kind=kind, stream=io.BytesIO(text.encode()), file_name="f.csv", actor=CommandLineActor(), **options
    )


def test_the_batch_is_running_while_its_rows_are_written(monkeypatch):
    ClientFactory(email="ann@example.net")
    seen: list[tuple[str, int | None]] = []
    original = TransactionFormat.write_chunk

    def write_chunk(self: TransactionFormat, chunk: Any) -> None:
        batch = ImportBatch.objects.get(pk=self.run.batch.pk)
        seen.append((batch.outcome, batch.duration))
        original(self, chunk)

    monkeypatch.setattr(TransactionFormat, "write_chunk", write_chunk)

    result = run("transactions", CASH + "ann@example.net,deposit,1,EUR,2026-01-05,,\n")

    assert seen == [(ImportBatch.Outcome.RUNNING, None)]
    result.batch.refresh_from_db()
    assert result.batch.outcome == ImportBatch.Outcome.SUCCEEDED
    assert result.batch.duration is not None
    assert len(result.batch.sha256) == 64


def test_a_batch_whose_run_breaks_on_an_unexpected_error_is_recorded_failed(monkeypatch):
    ClientFactory(email="ann@example.net")

    def broken(self: TransactionFormat, chunk: Any) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(TransactionFormat, "write_chunk", broken)

    with pytest.raises(RuntimeError):
        run("transactions", CASH + "ann@example.net,deposit,1,EUR,2026-01-05,,\n")

    assert list(ImportBatch.objects.values_list("outcome", flat=True)) == [ImportBatch.Outcome.FAILED]


def test_a_failed_and_a_dry_run_batch_keep_their_record_though_their_rows_are_rolled_back():
    ClientFactory(email="ann@example.net")
    good = CASH + "ann@example.net,deposit,1,EUR,2026-01-05,,\n"

    dry = run("transactions", good, dry_run=True)
    failed = run("transactions", good + "ann@example.net,deposit,x,EUR,2026-01-05,,\n")

    outcomes = dict(ImportBatch.objects.values_list("pk", "outcome"))
    assert outcomes == {dry.batch.pk: ImportBatch.Outcome.DRY_RUN, failed.batch.pk: ImportBatch.Outcome.FAILED}


def test_the_batch_page_counts_the_stored_rows_that_came_from_it(client, operations):
    result = run(
        "clients",
        "email,name,advisor,base_currency\n"
        f"a@example.net,A,{operations.email},EUR\nb@example.net,B,{operations.email},EUR\n",
    )
    client.force_login(operations)

    response = client.get(reverse("admin:imports_importbatch_change", args=[result.batch.pk]))

    assert response.status_code == 200
    assert "clients: 2; portfolios: 2" in response.content.decode()


@pytest.mark.postgres
def test_the_clients_upsert_locks_the_clients_it_reads_in_primary_key_order(advisor):
    ClientFactory(email="ann@example.net", advisor=advisor)
    text = f"email,name,advisor,base_currency\nann@example.net,Ann B,{advisor.email},EUR\n"

    with CaptureQueriesContext(connection) as queries:
        result = run("clients", text)

    assert result.ok
    assert result.batch.rows_updated == 1
    [lock] = [q["sql"] for q in queries.captured_queries if "FOR UPDATE" in q["sql"]]
    assert lock.startswith(f'SELECT "{ClientFormat.model._meta.db_table}".')
    assert lock.endswith('ORDER BY "clients_client"."id" ASC FOR UPDATE')
