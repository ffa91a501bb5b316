"""Admin imports above IMPORT_JOB_ROW_THRESHOLD rows run as a job; their page follows it through the cache."""

import time
from typing import Any

import pytest
from django.core.cache import cache
from django.urls import reverse

from ledger.models import Transaction
from portfolio_site.imports.models import ImportBatch, ImportUpload
from portfolio_site.imports.progress import progress_of, progress_reporter
from portfolio_site.imports.tasks import run_upload
from portfolio_site.imports.tests.test_admin import EMAIL, GOOD, IMPORT, confirm, csv_bytes, pending, upload
from portfolio_site.jobs.models import JobRun
from portfolio_site.testing import admin_messages

pytestmark = pytest.mark.django_db
PROGRESS = "admin:imports_importbatch_progress"


@pytest.fixture(autouse=True)
def small_threshold(settings: Any) -> None:
    settings.IMPORT_JOB_ROW_THRESHOLD = 1  # GOOD has 2 rows: a job


@pytest.fixture
def ann() -> Any:
    from clients.tests.factories import ClientFactory

    return ClientFactory(email=EMAIL, base_currency="EUR")


def test_a_large_upload_is_dry_run_by_a_job_and_its_page_waits_for_it(client: Any, operations: Any, ann: Any) -> None:
    client.force_login(operations)

    response = upload(client, GOOD)  # the job is sent on commit; here, nothing runs it yet

    stored = ImportUpload.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse(PROGRESS, args=[stored.pk])
    assert (stored.job, bytes(stored.content)) == ("dry_run", GOOD)
    page = client.get(response["Location"]).content.decode()
    assert 'id="import-queued"' in page
    assert '<meta http-equiv="refresh" content="2">' in page
    assert not ImportBatch.objects.exists()


def test_the_page_shows_rows_done_and_rows_per_second_from_the_cache(client: Any, operations: Any, ann: Any) -> None:
    client.force_login(operations)
    location = upload(client, GOOD)["Location"]
    upload_id = str(ImportUpload.objects.get().pk)
    cache.set(f"imports:progress:{upload_id}:dry_run", {"rows": 10000, "started": 100.0, "at": 104.0})

    page = client.get(location).content.decode()

    assert '<td id="rows-done">10000</td>' in page
    assert '<td id="rows-per-second">2500</td>' in page


def test_the_reporter_writes_what_the_page_reads() -> None:
    report = progress_reporter("u-1", "import")
    time.sleep(0.01)
    report(5000, 123456)
    progress = progress_of("u-1", "import")
    assert progress is not None
    assert progress.rows == 5000
    assert progress.seconds > 0
    assert progress_of("u-1", "dry_run") is None


def test_a_large_file_is_dry_run_then_imported_by_jobs_and_the_page_ends_on_the_batch(
    client: Any, operations: Any, ann: Any, django_capture_on_commit_callbacks: Any
) -> None:
    client.force_login(operations)
    with django_capture_on_commit_callbacks(execute=True):
        location = upload(client, GOOD)["Location"]

    report = client.get(location)  # the dry run is over: its report and the confirmation
    assert report.status_code == 200
    assert "Confirm import" in report.content.decode()
    assert '<td id="rows-created">2</td>' in report.content.decode()
    assert not Transaction.objects.exists()

    with django_capture_on_commit_callbacks(execute=True):
        sent = confirm(client)
    assert sent["Location"] == location
    done = client.get(location)

    batch = ImportBatch.objects.get(outcome=ImportBatch.Outcome.SUCCEEDED)
    assert done["Location"] == reverse("admin:imports_importbatch_change", args=[batch.pk])
    assert admin_messages(done) == [
        "Imported transactions from cash.csv: read 2, created 2, updated 0, skipped 0, rejected 0."
    ]
    assert Transaction.objects.count() == 2
    assert not ImportUpload.objects.exists()
    runs = JobRun.objects.filter(task="imports.run_upload", requested_by=operations)
    assert sorted(runs.values_list("arguments__dry_run", flat=True)) == [False, True]


def test_a_large_bad_file_reports_its_errors_after_the_job_and_offers_no_confirm(
    client: Any, operations: Any, ann: Any, django_capture_on_commit_callbacks: Any
) -> None:
    client.force_login(operations)
    with django_capture_on_commit_callbacks(execute=True):
        location = upload(client, csv_bytes(f"{EMAIL},deposit,-5,EUR,2026-01-05,,", "nobody@x.y,deposit,1,EUR,,,"))[
            "Location"
        ]

    page = client.get(location).content.decode()

    assert 'id="row-errors"' in page
    assert "Confirm import" not in page
    assert pending(client) is None
    assert not ImportUpload.objects.exists()


def test_running_the_import_job_twice_imports_once(operations: Any, ann: Any) -> None:
    stored = ImportUpload.objects.create(
        user=operations, kind="transactions", file_name="cash.csv", sha256="x", size=len(GOOD), rows=2, content=GOOD,
        job="import",
    )  # fmt: skip
    first = run_upload.apply(kwargs={"upload_id": str(stored.pk), "dry_run": False}).get()
    second = run_upload.apply(kwargs={"upload_id": str(stored.pk), "dry_run": False}).get()
    assert first == second
    assert ImportBatch.objects.count() == 1
    assert Transaction.objects.count() == 2


def test_the_progress_page_of_another_users_import_is_not_found(client: Any, operations: Any, ann: Any) -> None:
    client.force_login(operations)
    location = upload(client, GOOD)["Location"]
    other = type(operations).objects.create_user(email="ops9@example.com", password="x" * 12, is_staff=True)
    other.groups.set(operations.groups.all())
    client.force_login(other)
    assert client.get(location).status_code == 404


def test_a_small_file_still_runs_in_the_request(client: Any, operations: Any, ann: Any, settings: Any) -> None:
    settings.IMPORT_JOB_ROW_THRESHOLD = 2
    client.force_login(operations)
    response = upload(client, GOOD)
    assert response.status_code == 200
    assert ImportBatch.objects.get().outcome == ImportBatch.Outcome.DRY_RUN
    assert reverse(IMPORT) in response.content.decode()
