"""Change history: who, when, which door and what changed, for every door; never a credential; imports as batches;
scoped like the objects themselves; a changelist whose query count does not grow with its rows."""

import contextvars
import io
import sys
import time
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from unittest import mock

import pyotp
import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test import Client as WebClient
from django.utils import timezone
from rest_framework.test import APIClient
from simple_history.models import HistoricalRecords

import manage
from accounts.models import User
from accounts.roles import Role
from accounts.services.events import ClientInfo
from accounts.services.two_factor import totp_confirm, totp_enrol
from accounts.tests.factories import PASSWORD, OperationsFactory, access_token_for
from clients import services as client_services
from clients.models import Client, Portfolio
from clients.tests.factories import ClientFactory
from holdings import services as holdings_services
from holdings.models import Price
from holdings.tests.factories import AssetFactory
from portfolio_site import history
from portfolio_site.changelog.selectors import tracked_models
from portfolio_site.imports.models import ImportBatch
from portfolio_site.imports.run import run_import
from portfolio_site.jobs.base import enqueue, job

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/changelog/change/"


@job(name="changelog.tests.rename_client")
def rename_client(*, client_id: int, name: str) -> None:
    """A job that changes a tracked model through its service, as real jobs do."""
    client = Client.objects.get(pk=client_id)
    client_services.client_update(actor=User.objects.get(pk=client.advisor_id), client=client, name=name)


def logged_in(user: User) -> WebClient:
    """Through the admin's own login page (the login service), as a person would."""
    web = WebClient(REMOTE_ADDR="203.0.113.9", HTTP_USER_AGENT="Firefox/140")
    response = web.post("/admin/login/", {"username": user.email, "password": PASSWORD})
    assert response.status_code == 302, response.content
    return web


def run_manage(*argv: str) -> None:
    """`manage.py ...` in this process, in a copy of the context: its process-wide door must not outlive it."""
    # run_from_argv closes the database connections when it ends, which would end the test's transaction.
    with (
        mock.patch.object(sys, "argv", ["manage.py", *argv]),
        mock.patch("django.core.management.base.connections.close_all"),
    ):
        contextvars.copy_context().run(manage.main)


def clients_file(tmp_path: Path, advisor: User, rows: int) -> Path:
    lines = ["email,name,advisor,base_currency"]
    lines += [f"imported{n}@example.net,Imported {n},{advisor.email},EUR" for n in range(rows)]
    path = tmp_path / "clients.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --- One test per door: the user and the door are recorded ----------------------------------------------------------


def test_an_admin_change_records_the_logged_in_user_the_admin_door_and_the_change() -> None:
    staff = OperationsFactory()
    asset = AssetFactory()
    web = logged_in(staff)

    response = web.post(
        "/admin/holdings/price/add/", {"asset": asset.pk, "date": "2026-03-02", "close": "101.5", "notes": ""}
    )
    assert response.status_code == 302, response.content
    price = Price.objects.get(asset=asset)
    response = web.post(
        f"/admin/holdings/price/{price.pk}/change/",
        {"asset": asset.pk, "date": "2026-03-02", "close": "102.25", "notes": ""},
    )
    assert response.status_code == 302, response.content

    created, changed = price.history.order_by("history_id")
    assert (created.history_type, changed.history_type) == ("+", "~")
    assert {created.history_user, changed.history_user} == {staff}
    assert {created.history_door, changed.history_door} == {history.Door.ADMIN}
    (change,) = changed.diff_against(created).changes
    assert (change.field, change.old, change.new) == ("close", Decimal("101.5"), Decimal("102.25"))


def test_a_delete_in_the_admin_is_recorded_with_its_user_and_door_and_stays_listed() -> None:
    staff = OperationsFactory()
    price = Price.objects.create(asset=AssetFactory(), date=date(2026, 3, 2), close=Decimal("7"))
    web = logged_in(staff)

    response = web.post(f"/admin/holdings/price/{price.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302, response.content

    deleted = Price.history.filter(id=price.pk).latest()
    assert (deleted.history_type, deleted.history_user, deleted.history_door) == ("-", staff, history.Door.ADMIN)
    entries = web.get(CHANGELIST, {"model": "holdings.price"}).context["entries"]
    assert [(e.object_id, e.kind) for e in entries] == [(price.pk, "Deleted"), (price.pk, "Created")]
    assert web.get(entries[0].url).status_code == 200  # the deleted object's history page


def test_an_api_write_authenticated_by_a_jwt_records_its_user_and_the_api_door(advisor: User) -> None:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {access_token_for(advisor)}")

    response = api.post(
        "/api/v1/clients/", {"name": "Maria Gonzalez", "email": "maria@example.net", "base_currency": "EUR"}
    )
    assert response.status_code == 201, response.content
    client_id = response.json()["id"]
    response = api.patch(f"/api/v1/clients/{client_id}/", {"phone": "+44 20 7946 0958"}, format="json")
    assert response.status_code == 200, response.content

    records = Client.history.filter(id=client_id).order_by("history_id")
    assert [(r.history_type, r.history_user, r.history_door) for r in records] == [
        ("+", advisor, history.Door.API),
        ("~", advisor, history.Door.API),
    ]


def test_a_management_command_records_the_command_door() -> None:
    with mock.patch.dict("os.environ", {"DJANGO_SUPERUSER_PASSWORD": "a-long-enough-passphrase-9"}):
        run_manage("createsuperuser", "--noinput", "--email", "root@example.net", "--full_name", "Root")

    (record,) = User.history.filter(email="root@example.net")
    assert record.history_door == history.Door.COMMAND
    assert record.history_user is None  # nobody is logged in on a command line
    assert history.current_door() == ""  # the command's door ended with it


def test_an_import_command_records_its_batch_with_the_importing_user_and_the_command_door(
    tmp_path: Path, operations: User, advisor: User
) -> None:
    run_manage("import", "clients", str(clients_file(tmp_path, advisor, 3)), "--user", operations.email, "--quiet")

    batch = ImportBatch.objects.get()
    assert (batch.outcome, batch.user, batch.door, batch.rows_created) == ("succeeded", operations, "command", 3)


def test_a_job_records_who_asked_for_it_and_the_job_door(
    advisor: User, operations: User, django_capture_on_commit_callbacks: Any
) -> None:
    client = ClientFactory(advisor=advisor, name="Before")
    with django_capture_on_commit_callbacks(execute=True):
        enqueue(rename_client, requested_by=operations, client_id=client.pk, name="After")

    record = Client.history.filter(id=client.pk).latest()
    assert (record.history_type, record.name) == ("~", "After")
    assert (record.history_user, record.history_door) == (operations, history.Door.JOB)


# --- What is shown ------------------------------------------------------------------------------------------------


def test_the_objects_history_page_shows_who_the_door_and_before_to_after(operations: User, advisor: User) -> None:
    client = ClientFactory(advisor=advisor, name="Old Name")
    web = logged_in(operations)
    with history.acting(history.Door.API, user=operations):
        client_services.client_update(actor=operations, client=client, name="New Name")

    response = web.get(f"/admin/clients/client/{client.pk}/history/")

    assert response.status_code == 200
    page = response.content.decode()
    assert "Old Name" in page
    assert "New Name" in page
    assert "&rarr;" in page
    assert str(operations) in page
    assert "API" in page


def test_the_revision_page_is_read_only_and_refuses_a_post(operations: User, advisor: User) -> None:
    client = ClientFactory(advisor=advisor, name="Kept")
    record = Client.history.get(id=client.pk)
    web = logged_in(operations)
    url = f"/admin/clients/client/{client.pk}/history/{record.history_id}/"

    assert web.get(url).status_code == 200
    assert web.post(url, {"name": "Reverted", "email": client.email}).status_code == 405
    client.refresh_from_db()
    assert client.name == "Kept"


def test_the_changelist_lists_changes_across_models_and_filters_them(
    auditor: User, operations: User, advisor: User
) -> None:
    with history.acting(history.Door.API, user=operations):
        client = client_services.client_create(
            actor=operations, name="Via API", email="a@example.net", advisor=advisor, base_currency="EUR"
        )
    with history.acting(history.Door.ADMIN, user=advisor):
        AssetFactory(ticker="ADMN")
    web = logged_in(auditor)

    everything = web.get(CHANGELIST)
    assert everything.status_code == 200
    models = {entry.model for entry in everything.context["entries"]}
    assert {"clients.client", "clients.portfolio", "holdings.asset"} <= models

    by_door = web.get(CHANGELIST, {"door": "api"}).context["entries"]
    assert by_door
    assert {entry.door for entry in by_door} == {"API"}
    by_model = web.get(CHANGELIST, {"model": "holdings.asset"}).context["entries"]
    assert [entry.object_repr for entry in by_model] == ["ADMN.XNAS"]
    by_user = web.get(CHANGELIST, {"user": advisor.email}).context["entries"]
    assert {entry.user for entry in by_user} == {advisor}
    today = timezone.localdate()
    assert web.get(CHANGELIST, {"since": str(today + timedelta(days=1))}).context["entries"] == []
    in_range = web.get(CHANGELIST, {"since": str(today), "until": str(today)}).context["entries"]
    assert {entry.object_id for entry in in_range if entry.model == "clients.client"} == {client.pk}


def test_the_changelist_shows_before_and_after_of_a_change(auditor: User, advisor: User) -> None:
    client = ClientFactory(advisor=advisor, name="Before")
    client_services.client_update(actor=advisor, client=client, name="After")

    entries = logged_in(auditor).get(CHANGELIST, {"model": "clients.client"}).context["entries"]

    assert entries[0].kind == "Changed"
    assert entries[0].changes == ["name: Before → After"]


def test_a_role_given_or_taken_from_the_groups_side_is_recorded_on_each_user(superuser: User) -> None:
    first, second = OperationsFactory(), OperationsFactory()
    auditors = Group.objects.get(name=Role.AUDITORS)

    with history.acting(history.Door.ADMIN, user=superuser):
        auditors.user_set.add(first, second)
    added = {
        user.pk: set(User.history.filter(id=user.pk).latest().groups.values_list("group__name", flat=True))
        for user in (first, second)
    }
    with history.acting(history.Door.ADMIN, user=superuser):
        auditors.user_set.clear()
    cleared = {
        user.pk: set(User.history.filter(id=user.pk).latest().groups.values_list("group__name", flat=True))
        for user in (first, second)
    }

    assert added == {first.pk: {Role.OPERATIONS, Role.AUDITORS}, second.pk: {Role.OPERATIONS, Role.AUDITORS}}
    assert cleared == {first.pk: {Role.OPERATIONS}, second.pk: {Role.OPERATIONS}}


def test_a_role_given_or_taken_is_recorded_and_shown_before_to_after(superuser: User, auditor: User) -> None:
    staff = OperationsFactory(email="promoted@example.net")
    auditors = Group.objects.get(name=Role.AUDITORS)
    with history.acting(history.Door.ADMIN, user=superuser):
        staff.groups.add(auditors)

    record = User.history.filter(id=staff.pk).latest()
    assert (record.history_type, record.history_user, record.history_door) == ("~", superuser, "admin")
    web = logged_in(auditor)
    entries = web.get(CHANGELIST, {"model": "accounts.user", "door": "admin"}).context["entries"]
    assert entries[0].changes == ["groups: Operations → Auditors, Operations"]
    page = web.get(f"/admin/accounts/user/{staff.pk}/history/")
    assert page.status_code == 200
    shown = " ".join(page.text.split())
    assert "<strong>Groups:</strong> [Operations] &nbsp;&rarr;&nbsp;&nbsp;[Operations, Auditors]" in shown


# --- Never a credential -------------------------------------------------------------------------------------------


def test_passwords_totp_secrets_and_other_credentials_are_never_recorded(superuser: User) -> None:
    staff = OperationsFactory(email="credentials@example.net")
    with history.acting(history.Door.ADMIN, user=superuser):
        staff.set_password("a-brand-new-secret-passphrase")
        staff.save()
        totp = pyotp.TOTP(totp_enrol(user=staff).secret)
        recovery_codes = totp_confirm(user=staff, code=totp.at(time.time(), counter_offset=-1), client=ClientInfo())
        staff.full_name = "Renamed"
        staff.save()

    columns = {field.column for field in User.history.model._meta.fields}
    assert not columns & {"password", "last_login", "last_login_ip"}
    assert not any("totp" in column or "secret" in column or "recovery" in column for column in columns)
    # Every historical table, the roles' included: no credential in any column of any row.
    tables = [model.history.model._meta.db_table for model in tracked_models()]
    tables += [m2m_model._meta.db_table for m2m_model in HistoricalRecords.m2m_models.values()]
    stored = []
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            stored += [str(value) for row in cursor.fetchall() for value in row]
    text = " ".join(stored)
    for credential in [staff.password, "a-brand-new-secret-passphrase", totp.secret, *recovery_codes]:
        assert credential not in text
    assert "Renamed" in text
    # No model holding credentials is tracked at all.
    tracked = {model._meta.label for model in tracked_models()}
    assert not tracked & {"accounts.TOTPDevice", "accounts.RecoveryCode", "accounts.EmailLoginCode"}


def test_a_login_leaves_no_history_row(operations: User) -> None:
    before = User.history.filter(id=operations.pk).count()
    logged_in(operations)
    assert User.history.filter(id=operations.pk).count() == before


# --- Imports: one entry per batch ---------------------------------------------------------------------------------


def test_an_import_is_one_entry_its_batch_and_writes_no_history_row_per_imported_row(
    tmp_path: Path, operations: User, advisor: User, auditor: User
) -> None:
    client_rows, portfolio_rows = Client.history.count(), Portfolio.history.count()
    with history.acting(history.Door.ADMIN, user=operations):
        result = run_import(
            kind="clients",
            stream=io.BytesIO(clients_file(tmp_path, advisor, 5).read_bytes()),
            file_name="clients.csv",
            actor=operations,
        )

    batch = result.batch
    assert (batch.outcome, batch.rows_created, batch.door, batch.user) == ("succeeded", 5, "admin", operations)
    assert Client.objects.filter(import_batch=batch).count() == 5  # each row points at its batch
    assert (Client.history.count(), Portfolio.history.count()) == (client_rows, portfolio_rows)
    entries = logged_in(auditor).get(CHANGELIST).context["entries"]
    listed = [(e.model, e.object_id, e.kind) for e in entries if e.model != "accounts.user"]  # the fixtures' staff
    assert listed == [("imports.importbatch", batch.pk, "Imported")]


def test_a_dry_run_import_is_no_entry(tmp_path: Path, operations: User, advisor: User, auditor: User) -> None:
    run_import(
        kind="clients",
        stream=io.BytesIO(clients_file(tmp_path, advisor, 2).read_bytes()),
        file_name="clients.csv",
        actor=operations,
        dry_run=True,
    )
    entries = logged_in(auditor).get(CHANGELIST).context["entries"]
    assert [e for e in entries if e.model != "accounts.user"] == []  # the fixtures' staff aside


def test_closes_written_in_bulk_outside_an_import_are_recorded_per_row_with_door_and_user(operations: User) -> None:
    asset = AssetFactory()
    closes = [Price(asset=asset, date=date(2026, 1, day), close=Decimal(day)) for day in (5, 6, 7)]
    with history.acting(history.Door.JOB, user=operations):
        holdings_services.prices_bulk_create(prices=closes)

    records = Price.history.filter(asset=asset)
    assert records.count() == 3
    assert {(r.history_type, r.history_door, r.history_user) for r in records} == {("+", "job", operations)}


# --- Scoped as the objects are ------------------------------------------------------------------------------------


def test_an_advisor_sees_no_history_of_another_advisors_client(advisor: User, other_advisor: User) -> None:
    own = ClientFactory(advisor=advisor, name="Own")
    other = ClientFactory(advisor=other_advisor, name="Other")
    web = logged_in(advisor)

    assert web.get(f"/admin/clients/client/{own.pk}/history/").status_code == 200
    # Answered as the change page answers a client out of scope: "does not exist", back to the index.
    assert web.get(f"/admin/clients/client/{other.pk}/history/")["Location"] == "/admin/"
    record = Client.history.filter(id=other.pk).latest()
    assert web.get(f"/admin/clients/client/{other.pk}/history/{record.history_id}/")["Location"] == "/admin/"
    other_portfolio = other.portfolios.get()
    assert web.get(f"/admin/clients/portfolio/{other_portfolio.pk}/history/")["Location"] == "/admin/"
    entries = web.get(CHANGELIST).context["entries"]
    seen = {(entry.model, entry.object_id) for entry in entries}
    assert ("clients.client", own.pk) in seen
    assert ("clients.client", other.pk) not in seen
    assert all(entry.object_repr != "Other" for entry in entries)
    # Nor the staff accounts' history, which advisors may not view.
    assert "accounts.user" not in {entry.model for entry in entries}


def test_a_deleted_clients_history_stays_with_whoever_could_see_it(advisor: User, other_advisor: User) -> None:
    gone = ClientFactory(advisor=other_advisor, name="Gone")
    url = f"/admin/clients/client/{gone.pk}/history/"
    gone.delete()

    assert logged_in(advisor).get(url)["Location"] == "/admin/"
    assert logged_in(other_advisor).get(url).status_code == 200
    assert logged_in(other_advisor).get("/admin/clients/client/not-a-number/history/")["Location"] == "/admin/"


def test_staff_without_the_permission_cannot_open_the_changelist(nobody: User) -> None:
    nobody.set_password(PASSWORD)
    nobody.save()
    assert logged_in(nobody).get(CHANGELIST).status_code == 403


# --- Speed --------------------------------------------------------------------------------------------------------


def test_the_changelists_query_count_does_not_grow_with_its_rows(
    auditor: User, advisor: User, count_queries: Any
) -> None:
    web = logged_in(auditor)

    def make(n: int) -> None:
        for _ in range(n):
            client = ClientFactory(advisor=advisor)
            client_services.client_update(actor=advisor, client=client, name=client.name + " Jr")
            Price.objects.create(asset=AssetFactory(), date=date(2026, 1, 5), close=Decimal("1.5"))
            OperationsFactory().groups.add(Group.objects.get(name=Role.AUDITORS))  # roles: many-to-many rows

    def measure() -> int:
        return count_queries(lambda: web.get(CHANGELIST).status_code == 200)

    make(2)
    web.get(CHANGELIST)  # the login session's first sight of this client is bookkeeping, not the page's
    few = measure()
    make(20)
    many = measure()
    assert len(web.get(CHANGELIST).context["entries"]) == 50
    assert few == many, f"{few} queries with few rows, {many} with many"


def test_the_client_page_shows_its_recent_changes_and_the_changes_of_its_portfolios_only(advisor: User) -> None:
    own = ClientFactory(advisor=advisor, name="Own", phone="+41 22 000 00 00")
    elsewhere = ClientFactory(advisor=advisor, name="Elsewhere")
    web = logged_in(advisor)
    with history.acting(history.Door.API, user=advisor):
        client_services.client_update(actor=advisor, client=own, phone="+41 22 123 45 67")
        client_services.portfolio_update(actor=advisor, portfolio=own.portfolios.get(), name="Pension")
        client_services.client_update(actor=advisor, client=elsewhere, phone="+1 555 0100")

    panel = web.get(f"/admin/clients/client/{own.pk}/change/").context["client_changes_panels"]
    html = "".join(panel)
    assert "Recent changes" in html
    assert "+41 22 000 00 00 → +41 22 123 45 67" in html
    assert "Pension" in html
    assert "+1 555 0100" not in html  # another client's change
    link = f"{CHANGELIST}?client={own.pk}"
    assert link in html
    listed = web.get(link).context["entries"]
    assert {(entry.model, entry.object_id) for entry in listed} >= {("clients.client", own.pk)}
    assert all(entry.model in {"clients.client", "clients.portfolio"} for entry in listed)
    assert ("clients.client", elsewhere.pk) not in {(entry.model, entry.object_id) for entry in listed}


def test_another_advisors_client_id_in_the_changelists_client_filter_lists_nothing(
    advisor: User, other_advisor: User
) -> None:
    theirs = ClientFactory(advisor=other_advisor, name="Theirs")
    web = logged_in(advisor)

    assert web.get(f"{CHANGELIST}?client={theirs.pk}").context["entries"] == []
