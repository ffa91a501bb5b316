"""The import batches admin (read-only) and its Import page: who may use it, the dry run, the confirmation."""

import datetime
import hashlib
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from clients.tests.factories import ClientFactory, main_portfolio
from ledger.models import Transaction
from portfolio_site.imports import admin as imports_admin
from portfolio_site.imports.models import ImportBatch, ImportUpload
from portfolio_site.testing import admin_messages, changelist_ids, page_queries

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:imports_importbatch_changelist"
IMPORT = "admin:imports_importbatch_import"
HEADER = "client,kind,amount,currency,date,reference,notes"
EMAIL = "ann@example.net"


def csv_bytes(*rows: str) -> bytes:
    return ("\n".join([HEADER, *rows]) + "\n").encode()


GOOD = csv_bytes(f"{EMAIL},deposit,100,EUR,2026-01-05,DEP-1,", f"{EMAIL},withdrawal,40,EUR,2026-01-06,,")


def upload(client: Any, data: bytes, name: str = "cash.csv", kind: str = "transactions") -> Any:
    return client.post(reverse(IMPORT), {"kind": kind, "file": SimpleUploadedFile(name, data, "text/csv")})


def confirm(client: Any, sha256: str | None = None) -> Any:
    if sha256 is None:
        sha256 = pending(client)["sha256"]
    return client.post(reverse(IMPORT), {"_confirm": "Confirm import", "sha256": sha256})


def pending(client: Any) -> dict[str, str]:
    user_id = client.session["_auth_user_id"]
    return client.session.get(f"imports.pending.{user_id}")


def make_batches(count: int, user: Any) -> None:
    now = timezone.now()
    for n in range(count):
        ImportBatch.objects.create(
            kind="transactions",
            file_name=f"file-{n}.csv",
            sha256=hashlib.sha256(str(n).encode()).hexdigest(),
            rows_read=n,
            rows_created=n,
            outcome=ImportBatch.Outcome.SUCCEEDED,
            user=user if n % 2 else None,
            run_by=user.email if n % 2 else "cron",
            started_at=now - datetime.timedelta(minutes=n),
            duration=datetime.timedelta(seconds=n),
        )


@pytest.fixture
def ann() -> Any:
    return ClientFactory(email=EMAIL, base_currency="EUR")


# --- Changelist -------------------------------------------------------------------------------------------------


def test_batch_changelist_loads_with_the_same_query_count_for_5_and_50_batches(client, operations, count_queries):
    client.force_login(operations)
    url = reverse(CHANGELIST)
    make_batches(5, operations)
    page_queries(client, count_queries, url)  # warm up per-process caches (content types, ...)
    few = page_queries(client, count_queries, url)

    make_batches(45, operations)
    many = page_queries(client, count_queries, url)

    assert len(client.get(url).context["cl"].result_list) == 50
    assert few == many


def test_batch_changelist_filters_by_kind_and_outcome_and_searches_file_name_and_hash(client, superuser):
    make_batches(3, superuser)
    failed = ImportBatch.objects.get(file_name="file-1.csv")
    failed.outcome = ImportBatch.Outcome.FAILED
    failed.save()
    client.force_login(superuser)
    url = reverse(CHANGELIST)

    assert changelist_ids(client.get(url, {"outcome": "failed"})) == {failed.pk}
    assert len(changelist_ids(client.get(url, {"kind": "transactions"}))) == 3
    assert changelist_ids(client.get(url, {"q": "file-2"})) == {ImportBatch.objects.get(file_name="file-2.csv").pk}
    assert changelist_ids(client.get(url, {"q": failed.sha256[:12]})) == {failed.pk}


@pytest.mark.parametrize("role", ["operations", "auditor"])
def test_operations_and_auditors_see_the_batches_read_only(client, request, role):
    make_batches(1, request.getfixturevalue("superuser"))
    batch = ImportBatch.objects.get()
    client.force_login(request.getfixturevalue(role))

    changelist = client.get(reverse(CHANGELIST))
    page = client.get(reverse("admin:imports_importbatch_change", args=[batch.pk]))

    assert changelist.status_code == 200
    assert changelist_ids(changelist) == {batch.pk}
    assert page.status_code == 200
    assert page.context["has_change_permission"] is False
    assert client.get(reverse("admin:imports_importbatch_add")).status_code == 403
    assert client.post(reverse("admin:imports_importbatch_delete", args=[batch.pk]), {"post": "yes"}).status_code == 403
    assert ImportBatch.objects.count() == 1


def test_batches_are_hidden_from_advisors_and_staff_in_no_role(client, advisor, nobody):
    for user in (advisor, nobody):
        client.force_login(user)
        assert client.get(reverse(CHANGELIST)).status_code == 403


def test_the_import_button_is_shown_to_those_who_may_run_imports_only(client, operations, auditor):
    client.force_login(operations)
    assert reverse(IMPORT) in client.get(reverse(CHANGELIST)).content.decode()

    client.force_login(auditor)
    assert reverse(IMPORT) not in client.get(reverse(CHANGELIST)).content.decode()


# --- Who may import -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["auditor", "advisor", "nobody"])
def test_the_import_page_is_forbidden_without_run_import(client, request, ann, role):
    client.force_login(request.getfixturevalue(role))

    assert client.get(reverse(IMPORT)).status_code == 403
    assert upload(client, GOOD).status_code == 403
    assert client.post(reverse(IMPORT), {"_confirm": "1", "sha256": "x"}).status_code == 403
    assert not ImportBatch.objects.exists()
    assert not Transaction.objects.exists()


def test_the_import_page_asks_an_anonymous_visitor_to_log_in(client):
    response = client.get(reverse(IMPORT))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


@pytest.mark.parametrize("role", ["operations", "superuser"])
def test_the_import_page_offers_every_kind(client, request, role):
    client.force_login(request.getfixturevalue(role))

    response = client.get(reverse(IMPORT))

    assert response.status_code == 200
    kinds = [value for value, _ in response.context["form"].fields["kind"].choices]
    assert "transactions" in kinds
    assert kinds == sorted(kinds)


# --- Dry run, then confirm ----------------------------------------------------------------------------------------


def test_an_upload_is_dry_run_and_its_report_shown_with_nothing_written(client, operations, ann):
    client.force_login(operations)

    response = upload(client, GOOD)

    assert response.status_code == 200
    page = response.content.decode()
    assert "Confirm import" in page
    assert '<td id="rows-read">2</td>' in page
    assert '<td id="rows-created">2</td>' in page
    assert not Transaction.objects.exists()
    batch = ImportBatch.objects.get()
    assert (batch.outcome, batch.kind, batch.file_name, batch.user) == (
        ImportBatch.Outcome.DRY_RUN,
        "transactions",
        "cash.csv",
        operations,
    )
    waiting = pending(client)
    assert waiting["sha256"] == batch.sha256
    stored = ImportUpload.objects.get(pk=waiting["upload"])  # in the database, not one machine's temp folder
    assert bytes(stored.content) == GOOD
    assert (stored.user, stored.rows, stored.size) == (operations, 2, len(GOOD))


def test_confirm_imports_the_file_records_a_batch_and_redirects_to_it(client, operations, ann):
    client.force_login(operations)
    upload(client, GOOD)
    waiting = pending(client)

    response = confirm(client)

    batch = ImportBatch.objects.get(outcome=ImportBatch.Outcome.SUCCEEDED)
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:imports_importbatch_change", args=[batch.pk])
    assert admin_messages(response) == [
        "Imported transactions from cash.csv: read 2, created 2, updated 0, skipped 0, rejected 0."
    ]
    assert (batch.rows_created, batch.user, batch.sha256) == (2, operations, waiting["sha256"])
    assert sorted(Transaction.objects.values_list("kind", "created_by")) == [
        ("deposit", operations.pk),
        ("withdrawal", operations.pk),
    ]
    assert not ImportUpload.objects.filter(pk=waiting["upload"]).exists()
    assert pending(client) is None
    assert ImportBatch.objects.count() == 2  # the dry run and the import


def test_confirming_twice_imports_once(client, operations, ann):
    client.force_login(operations)
    upload(client, GOOD)
    sha256 = pending(client)["sha256"]
    client.get(confirm(client, sha256)["Location"])  # the batch page, showing the first confirm's message

    response = confirm(client, sha256)

    assert response.status_code == 302
    assert response["Location"] == reverse(IMPORT)
    assert admin_messages(response) == ["There is no dry-run file to confirm: upload the file again."]
    assert Transaction.objects.count() == 2


def test_a_bad_file_shows_its_errors_offers_no_confirm_and_keeps_nothing(client, operations, ann):
    client.force_login(operations)
    data = csv_bytes(f"{EMAIL},deposit,abc,EUR,2026-01-05,,", "ghost@example.net,deposit,5,EUR,2026-01-05,,")

    response = upload(client, data)

    page = response.content.decode()
    assert response.status_code == 200
    assert "line 2, amount: &#x27;abc&#x27; is not a number" in page
    assert "line 3, client: no client with the email ghost@example.net (or not one you may see)" in page
    assert "Confirm import" not in page
    assert ImportBatch.objects.get().outcome == ImportBatch.Outcome.FAILED
    assert pending(client) is None
    assert not Transaction.objects.exists()


def test_a_file_with_a_bad_header_shows_the_columns_in_question(client, operations, ann):
    client.force_login(operations)

    page = upload(client, b"client,colour\nx,y\n").content.decode()

    assert "line 1, header: unknown column(s): colour; missing column(s): kind, amount" in page
    assert "Confirm import" not in page


def test_a_file_that_is_not_utf8_shows_a_clear_error(client, operations, ann):
    client.force_login(operations)
    data = HEADER.encode() + b"\n" + f"{EMAIL},deposit,1,EUR,2026-01-05,,Caf".encode() + b"\xe9\n"

    page = upload(client, data).content.decode()

    assert "not UTF-8 text: save the file as UTF-8" in page
    assert "Confirm import" not in page


def test_more_than_50_errors_are_listed_as_50_and_a_count_of_the_rest(client, operations, ann):
    client.force_login(operations)

    page = upload(client, csv_bytes(*(f"{EMAIL},deposit,0,EUR,2026-01-05,," for _ in range(55)))).content.decode()

    assert page.count("amount: must be greater than 0") == 50
    assert "... and 5 more" in page


def test_the_upload_form_needs_a_file(client, operations):
    client.force_login(operations)

    response = client.post(reverse(IMPORT), {"kind": "transactions"})

    assert response.status_code == 200
    assert response.context["form"].errors == {"file": ["This field is required."]}
    assert not ImportBatch.objects.exists()


def test_confirm_is_refused_if_the_file_changed_since_its_dry_run(client, operations, ann):
    client.force_login(operations)
    upload(client, GOOD)
    waiting = pending(client)
    changed = GOOD + f"{EMAIL},withdrawal,60,EUR,2026-01-07,,\n".encode()
    ImportUpload.objects.filter(pk=waiting["upload"]).update(content=changed)

    response = confirm(client)

    assert response["Location"] == reverse(IMPORT)
    assert admin_messages(response) == [
        "The uploaded file is missing or has changed since its dry run: nothing was imported."
    ]
    assert not Transaction.objects.exists()
    assert not ImportUpload.objects.exists()
    assert pending(client) is None


def test_confirm_is_refused_if_the_file_is_gone(client, operations, ann):
    client.force_login(operations)
    upload(client, GOOD)
    ImportUpload.objects.filter(pk=pending(client)["upload"]).delete()

    response = confirm(client)

    assert admin_messages(response) == [
        "The uploaded file is missing or has changed since its dry run: nothing was imported."
    ]
    assert not Transaction.objects.exists()


def test_confirm_is_refused_for_a_report_older_than_the_latest_upload(client, operations, ann):
    client.force_login(operations)
    upload(client, GOOD)
    first = pending(client)
    upload(client, csv_bytes(f"{EMAIL},deposit,7,EUR,2026-01-05,,"), name="other.csv")  # in another tab

    response = confirm(client, first["sha256"])

    assert admin_messages(response) == ["This is not the file of your latest dry run: upload it again."]
    assert not Transaction.objects.exists()
    assert not ImportUpload.objects.filter(pk=first["upload"]).exists()  # replaced by the newer upload
    confirm(client)
    assert list(Transaction.objects.values_list("amount", flat=True)) == [7]


def test_confirm_without_a_dry_run_is_refused(client, operations):
    client.force_login(operations)

    response = confirm(client, "0" * 64)

    assert admin_messages(response) == ["There is no dry-run file to confirm: upload the file again."]
    assert not ImportBatch.objects.exists()


def test_a_pending_upload_belongs_to_its_user(client, operations, ann):
    other = type(operations).objects.create_user(email="ops2@example.com", password="x" * 12, is_staff=True)
    other.groups.set(operations.groups.all())
    client.force_login(operations)
    upload(client, GOOD)
    sha256 = pending(client)["sha256"]
    client.force_login(other)  # a new session, and another user

    response = confirm(client, sha256)

    assert admin_messages(response) == ["There is no dry-run file to confirm: upload the file again."]
    assert not Transaction.objects.exists()


def test_a_confirmed_import_that_fails_now_reports_it_and_writes_nothing(client, operations, ann):
    client.force_login(operations)
    upload(client, csv_bytes(f"{EMAIL},deposit,100,EUR,2026-01-05,R-1,"))
    Transaction.objects.create(
        client=ann,
        portfolio=main_portfolio(ann),
        kind="deposit",
        amount=1,
        currency="EUR",
        date=datetime.date(2026, 1, 5),
        reference="R-1",
    )  # posted meanwhile, with other details

    response = confirm(client)

    batch = ImportBatch.objects.latest("started_at")
    assert batch.outcome == ImportBatch.Outcome.FAILED
    assert response["Location"] == reverse("admin:imports_importbatch_change", args=[batch.pk])
    assert admin_messages(response) == [
        "transactions from cash.csv failed and nothing was written "
        "(read 1, created 0, updated 0, skipped 0, rejected 1): see errors."
    ]
    assert Transaction.objects.count() == 1


def test_abandoned_uploads_are_removed_after_a_day(client, operations, ann):
    other = type(operations).objects.create_user(email="ops3@example.com", password="x" * 12, is_staff=True)
    day_ago = timezone.now() - datetime.timedelta(seconds=imports_admin.UPLOAD_MAX_AGE_SECONDS + 60)
    stored = {"kind": "transactions", "sha256": "0" * 64, "size": len(GOOD), "rows": 2, "content": GOOD}
    old = ImportUpload.objects.create(user=other, file_name="old.csv", created_at=day_ago, **stored)
    recent = ImportUpload.objects.create(user=other, file_name="recent.csv", **stored)
    client.force_login(operations)

    upload(client, GOOD)

    assert not ImportUpload.objects.filter(pk=old.pk).exists()
    assert ImportUpload.objects.filter(pk=recent.pk).exists()


def test_the_import_page_lists_the_columns_of_each_kind(client, operations):
    client.force_login(operations)

    page = client.get(reverse(IMPORT)).content.decode()

    assert "<h3>transactions</h3>" in page
    assert "<td><code>amount</code></td><td>required</td><td>positive, up to 4 decimal places</td>" in page


def test_roles_grant_operations_view_and_run_and_auditors_view_only(operations, auditor, advisor):
    assert operations.has_perms(["imports.view_importbatch", "imports.run_import"])
    assert auditor.has_perm("imports.view_importbatch")
    assert not auditor.has_perm("imports.run_import")
    assert not advisor.has_perm("imports.view_importbatch")
    assert not advisor.has_perm("imports.run_import")
    for user in (operations, auditor):
        assert not user.has_perm("imports.add_importbatch")
        assert not user.has_perm("imports.change_importbatch")
        assert not user.has_perm("imports.delete_importbatch")
