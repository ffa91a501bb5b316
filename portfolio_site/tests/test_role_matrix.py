"""Each role, logged in to the admin, on every page of every registration: what it shows and what it refuses.

The registrations are found (`admin.site._registry`), not listed: a new one fails
`test_every_admin_registration_has_an_expectation_and_an_object` until it has a row in PAGES and a maker in OBJECT
(or ROW_FOR_CLIENT, for a client-owned model), and so is tested for every role. For each role and registration the
test opens the changelist, the add page, and the change, history and delete pages of an object of advisor A's
client (or, for staff and reference data, an object anyone with the view permission sees), and compares the
actions the list offers with those expected.

Advisor B holds advisor A's permissions and sees none of advisor A's clients' rows: each such page answers as for a
missing object (Django's admin redirects with "… doesn't exist", exactly as for an id that was never used, so
nothing tells the two apart), or 403 where B lacks the permission anyway; and the list leaves the row out.
"""

import datetime
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group
from django.db import models, transaction
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    SolarSchedule,
)

from accounts.models import LoginSession, SecurityEvent
from accounts.services.events import ClientInfo
from accounts.services.sessions import session_start
from accounts.tests.factories import AdvisorFactory, AuditorFactory, OperationsFactory, SuperuserFactory, UserFactory
from clients.models import Client
from clients.tests.factories import ClientFactory
from holdings.tests.factories import (
    AssetDescriptionProposalFactory,
    AssetFactory,
    AssetImageFactory,
    FxRateFactory,
    PriceFactory,
    SplitFactory,
)
from portfolio_site.imports.formats import format_for_model
from portfolio_site.imports.models import ImportBatch
from portfolio_site.jobs.models import JobRun
from portfolio_site.scoping import owner_path
from portfolio_site.testing import admin_messages, changelist_ids
from portfolio_site.tests.test_visibility_matrix import ROW_FOR_CLIENT
from trading.tests.factories import BrokerConnectionFactory, ModelPortfolioFactory

pytestmark = pytest.mark.django_db

ROLES = ("advisor_a", "advisor_b", "operations", "auditor", "nobody", "superuser")
ADVISORS = ("advisor_a", "advisor_b")


def can(*, advisors: str = "", operations: str = "", auditor: str = "", superuser: str = "vacd") -> dict[str, str]:
    """What each role may do on one registration: v view (list, read-only change page, history), a add, c change,
    d delete. Staff in no group may do nothing anywhere."""
    return {
        "advisor_a": advisors,
        "advisor_b": advisors,
        "operations": operations,
        "auditor": auditor,
        "nobody": "",
        "superuser": superuser,
    }


READ_ONLY = "v"  # rows only services write (the ledger, holds, security records, job runs, import batches)

# The table of roles (README, "Roles and visibility"), as the admin applies it. Auditors: read-only everything.
PAGES: dict[str, dict[str, str]] = {
    "auth.Group": can(auditor="v"),
    "accounts.User": can(operations="v", auditor="v"),
    "accounts.LoginSession": can(operations=READ_ONLY, auditor=READ_ONLY, superuser=READ_ONLY),
    "accounts.SecurityEvent": can(operations=READ_ONLY, auditor=READ_ONLY, superuser=READ_ONLY),
    "clients.Client": can(advisors="vac", operations="vacd", auditor="v"),
    "clients.Portfolio": can(advisors="vac", operations="vacd", auditor="v"),
    "ledger.Transaction": can(advisors=READ_ONLY, operations=READ_ONLY, auditor=READ_ONLY, superuser=READ_ONLY),
    "ledger.CashHold": can(advisors=READ_ONLY, operations=READ_ONLY, auditor=READ_ONLY, superuser=READ_ONLY),
    "holdings.UnitHold": can(advisors=READ_ONLY, operations=READ_ONLY, auditor=READ_ONLY, superuser=READ_ONLY),
    # Orders are added as drafts and moved on by the services' actions (below), never edited or deleted.
    "trading.Order": can(advisors="va", operations="v", auditor="v", superuser="va"),
    "trading.Fill": can(advisors=READ_ONLY, operations=READ_ONLY, auditor=READ_ONLY, superuser=READ_ONLY),
    # Broker connections are managed by Operations; advisors read them to choose where an order goes.
    "trading.BrokerConnection": can(advisors="v", operations="vacd", auditor="v"),
    "trading.BrokerAccount": can(advisors="v", operations="vacd", auditor="v"),
    # Model portfolios are the firm's, managed by Operations; advisors make their clients' portfolios follow them.
    "trading.ModelPortfolio": can(advisors="v", operations="vacd", auditor="v"),
    "trading.ModelAssignment": can(advisors="vacd", operations="v", auditor="v"),
    # Proposals are made and accepted through the API; the admin reads them.
    "trading.RebalanceProposal": can(advisors=READ_ONLY, operations=READ_ONLY, auditor=READ_ONLY, superuser=READ_ONLY),
    "holdings.Asset": can(advisors="v", operations="vacd", auditor="v"),
    # Uploaded on the asset's page (its inline), so no add page of their own; their kind may change.
    "holdings.AssetImage": can(advisors="v", operations="vcd", auditor="v", superuser="vcd"),
    # Written by the describer's job, decided by the actions below, never edited.
    "holdings.AssetDescriptionProposal": can(
        advisors=READ_ONLY, operations=READ_ONLY, auditor=READ_ONLY, superuser=READ_ONLY
    ),
    "holdings.Price": can(advisors="v", operations="vacd", auditor="v"),
    "holdings.FxRate": can(advisors="v", operations="vacd", auditor="v"),
    "holdings.Split": can(advisors="v", operations="vacd", auditor="v"),
    "holdings.Allocation": can(advisors="vacd", operations="vacd", auditor="v"),
    "holdings.Dividend": can(advisors="vacd", operations="vacd", auditor="v"),
    "imports.ImportBatch": can(operations=READ_ONLY, auditor=READ_ONLY, superuser=READ_ONLY),
    "jobs.JobRun": can(operations=READ_ONLY, auditor=READ_ONLY, superuser=READ_ONLY),
    "django_celery_beat.PeriodicTask": can(auditor="v"),
    "django_celery_beat.IntervalSchedule": can(auditor="v"),
    "django_celery_beat.CrontabSchedule": can(auditor="v"),
    "django_celery_beat.SolarSchedule": can(auditor="v"),
    "django_celery_beat.ClockedSchedule": can(auditor="v"),
    # Every role with a role reads the changes it may see (each entry as its model allows: changelog's own tests).
    "changelog.Change": can(advisors="v", operations="v", auditor="v", superuser="v"),
}

# Registrations that are a list only, with no object of their own to open (each history entry links to its object's
# own history page, which the object's registration covers above).
LIST_ONLY = {"changelog.Change"}

# Actions beyond the two every list derives from PAGES (delete_selected with "d"; export_selected with "v" on a model
# that is an import kind), and the roles offered each. None of them is offered to a role that may not write.
WRITERS_OF_CLIENTS = {"advisor_a", "advisor_b", "operations", "superuser"}
MORE_ACTIONS: dict[str, dict[str, set[str]]] = {
    "clients.Client": {"deactivate_selected": WRITERS_OF_CLIENTS, "reactivate_selected": WRITERS_OF_CLIENTS},
    # Reversing posts a transaction: add_transaction, which Advisors and Operations hold.
    "ledger.Transaction": {"reverse_selected": {"advisor_a", "advisor_b", "operations", "superuser"}},
    "accounts.LoginSession": {"revoke_sessions": {"operations", "superuser"}},
    # trading.submit_order: Advisors; trading.cancel_order: Advisors and Operations (a desk stopping a mistake).
    "trading.Order": {
        "submit_selected": {"advisor_a", "advisor_b", "superuser"},
        "cancel_selected": {"advisor_a", "advisor_b", "operations", "superuser"},
    },
    # Describing an image and deciding on a description change the asset: holdings.change_asset, Operations'.
    "holdings.AssetImage": {"describe_selected": {"operations", "superuser"}},
    "holdings.AssetDescriptionProposal": {
        "accept_selected": {"operations", "superuser"},
        "reject_selected": {"operations", "superuser"},
    },
    # trading.check_brokerconnection: Operations.
    "trading.BrokerConnection": {"check_selected": {"operations", "superuser"}},
    "django_celery_beat.PeriodicTask": {
        name: {"superuser"} for name in ("enable_tasks", "disable_tasks", "toggle_tasks", "run_tasks")
    },
}


# Objects of advisor A outside another role's scope besides client-owned rows: a job run is seen by whoever asked
# for it, and by those holding `jobs.view_all_jobruns`.
HIDDEN_FROM: dict[str, set[str]] = {"jobs.JobRun": {"advisor_b", "nobody"}}


def _login_session(user: Any) -> LoginSession:
    session, _ = session_start(user=user, client=ClientInfo(ip="127.0.0.1", user_agent="pytest"))
    return session


def _periodic_task(_: Any) -> PeriodicTask:
    every = IntervalSchedule.objects.create(every=10, period=IntervalSchedule.SECONDS)
    return PeriodicTask.objects.create(name=f"task {uuid.uuid4()}", task="jobs.heartbeat", interval=every)


# An object of each registration that is not client-owned, given advisor A (the client-owned ones come from
# ROW_FOR_CLIENT, for a client of advisor A).
OBJECT: dict[str, Callable[[Any], models.Model]] = {
    "auth.Group": lambda advisor: advisor.groups.get(),
    "accounts.User": lambda advisor: advisor,
    "accounts.LoginSession": _login_session,
    "accounts.SecurityEvent": lambda advisor: SecurityEvent.objects.create(
        kind=SecurityEvent.Kind.values[0], user=advisor, email=advisor.email
    ),
    "holdings.Asset": lambda _: AssetFactory(),
    "holdings.AssetImage": lambda _: AssetImageFactory(),
    "holdings.AssetDescriptionProposal": lambda _: AssetDescriptionProposalFactory(),
    "trading.BrokerConnection": lambda _: BrokerConnectionFactory(),
    "trading.ModelPortfolio": lambda _: ModelPortfolioFactory(),
    "holdings.Price": lambda _: PriceFactory(),
    "holdings.FxRate": lambda _: FxRateFactory(),
    "holdings.Split": lambda _: SplitFactory(),
    "imports.ImportBatch": lambda advisor: ImportBatch.objects.create(
        kind="clients",
        file_name="clients.csv",
        sha256="0" * 64,
        user=advisor,
        run_by=advisor.email,
        started_at=timezone.now(),
    ),
    "jobs.JobRun": lambda advisor: JobRun.objects.create(
        task="jobs.heartbeat", job_id=str(uuid.uuid4()), requested_by=advisor, started_at=timezone.now()
    ),
    "django_celery_beat.PeriodicTask": _periodic_task,
    "django_celery_beat.IntervalSchedule": lambda _: IntervalSchedule.objects.create(every=5, period="minutes"),
    "django_celery_beat.CrontabSchedule": lambda _: CrontabSchedule.objects.create(minute="7", hour="3"),
    "django_celery_beat.SolarSchedule": lambda _: SolarSchedule.objects.create(
        event="sunrise", latitude=51.5, longitude=-0.1
    ),
    "django_celery_beat.ClockedSchedule": lambda _: ClockedSchedule.objects.create(
        clocked_time=timezone.now() + datetime.timedelta(days=1)
    ),
}


def _registrations() -> list[tuple[str, type[models.Model]]]:
    return [(model._meta.label, model) for model in admin.site._registry]


def _client_owned(model: type[models.Model]) -> bool:
    return owner_path(model) is not None


def _expected_actions(label: str, model: type[models.Model], role: str) -> set[str]:
    allowed = PAGES[label][role]
    expected = {name for name, roles in MORE_ACTIONS.get(label, {}).items() if role in roles}
    if "d" in allowed:
        expected.add("delete_selected")
    if "v" in allowed and format_for_model(model) is not None:
        expected.add("export_selected")
    return expected


def _users() -> dict[str, Any]:
    return {
        "advisor_a": AdvisorFactory(),
        "advisor_b": AdvisorFactory(),
        "operations": OperationsFactory(),
        "auditor": AuditorFactory(),
        "nobody": UserFactory(),
        "superuser": SuperuserFactory(),
    }


def test_every_admin_registration_has_an_expectation_and_an_object() -> None:
    for label, model in _registrations():
        assert label in PAGES, f"add {label} to PAGES: what each role may do on its admin pages"
        assert set(PAGES[label]) == set(ROLES), label
        if label in LIST_ONLY:
            continue
        maker = ROW_FOR_CLIENT.get(model) if _client_owned(model) else OBJECT.get(label)
        assert maker is not None, f"add a maker for {label} to OBJECT (or ROW_FOR_CLIENT)"
    assert set(PAGES) == {label for label, _ in _registrations()}, "PAGES names a model the admin no longer has"


def test_no_role_but_superusers_and_the_writers_of_a_model_is_offered_a_writing_action() -> None:
    # Guards the table itself: auditors and staff in no group are offered nothing that writes.
    for label, actions in MORE_ACTIONS.items():
        for name, roles in actions.items():
            assert not roles & {"auditor", "nobody"}, (label, name)


def _refused(status: int, shown: list[str], *, hidden: bool) -> bool:
    """403; or, for an object outside the user's scope, the answer for a missing object (Django checks whether the
    object exists before some permissions, and a hidden one must answer exactly as a missing one)."""
    missing = status == 302 and any("doesn\u2019t exist" in message for message in shown)  # Django's apostrophe
    return status == 403 or (hidden and missing)


def _status(client: Any, url: str) -> tuple[int, list[str]]:
    response = client.get(url)
    return response.status_code, admin_messages(response) if response.status_code == 302 else []


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(
    ("label", "model"), [pytest.param(label, model, id=label) for label, model in _registrations()]
)
def test_each_role_sees_and_is_refused_what_the_table_says_on_every_admin_page(
    label: str, model: type[models.Model], role: str, client: Any
) -> None:
    users = _users()
    user = users[role]
    if label in LIST_ONLY:
        client.force_login(user)
        listed = client.get(reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist"))
        assert listed.status_code == (200 if "v" in PAGES[label][role] else 403)
        return
    owned = _client_owned(model)
    obj = (
        ROW_FOR_CLIENT[model](ClientFactory(advisor=users["advisor_a"])) if owned else OBJECT[label](users["advisor_a"])
    )
    allowed = PAGES[label][role]
    # Another advisor's client, or any client for staff in no group: as if it did not exist.
    hidden = role in HIDDEN_FROM.get(label, set()) or (owned and role in ("advisor_b", "nobody"))
    opts = model._meta
    url = f"admin:{opts.app_label}_{opts.model_name}"
    client.force_login(user)

    listed = client.get(reverse(f"{url}_changelist"))
    if "v" not in allowed:
        assert listed.status_code == 403
        assert client.get(reverse(f"{url}_add")).status_code == 403
        for page in ("change", "history", "delete"):
            status, shown = _status(client, reverse(f"{url}_{page}", args=[obj.pk]))
            assert _refused(status, shown, hidden=hidden), (page, status)
        return

    assert listed.status_code == 200
    action_form = listed.context["action_form"]
    offered = {name for name, _ in action_form.fields["action"].choices if name} if action_form else set()
    assert offered == _expected_actions(label, model, role)
    if owned:
        assert (obj.pk in changelist_ids(listed)) is not hidden

    assert client.get(reverse(f"{url}_add")).status_code == (200 if "a" in allowed else 403)
    for page, needs in (("change", "v"), ("history", "v"), ("delete", "d")):
        status, shown = _status(client, reverse(f"{url}_{page}", args=[obj.pk]))
        if needs not in allowed or hidden:
            assert _refused(status, shown, hidden=hidden), (page, status, shown)
        else:
            assert status == 200, page


def test_an_advisor_sees_their_own_client_and_not_another_advisors_on_the_client_page(client: Any) -> None:
    # The same scope as the API's (clients.scope.ClientScope): what the role test's advisor B proves for every page.
    advisor, other = AdvisorFactory(), AdvisorFactory()
    own, theirs = ClientFactory(advisor=advisor), ClientFactory(advisor=other)
    client.force_login(advisor)

    assert set(Client.objects.visible_to(advisor)) == {own}
    assert changelist_ids(client.get(reverse("admin:clients_client_changelist"))) == {own.pk}
    assert client.get(reverse("admin:clients_client_change", args=[theirs.pk])).status_code == 302


def test_roles_hold_the_groups_the_table_names() -> None:
    assert set(Group.objects.values_list("name", flat=True)) >= {"Advisors", "Operations", "Auditors"}


# The client page's inlines whose rows are written there (through their app's services), as the model's own page.
INLINE_EDITABLE = {"holdings.Allocation"}


@pytest.mark.parametrize("role", ["advisor_a", "operations", "auditor", "superuser"])
def test_the_client_pages_inlines_let_each_role_do_what_the_table_says_of_their_model(role: str, client: Any) -> None:
    # Allocations are added, changed and deleted on the client's page by those who may (through the services); every
    # other inline (portfolios, transactions, dividends) is read-only there for everyone.
    users = _users()
    own = ClientFactory(advisor=users["advisor_a"])
    client.force_login(users[role])

    response = client.get(reverse("admin:clients_client_change", args=[own.pk]))

    assert response.status_code == 200
    for inline in response.context["inline_admin_formsets"]:
        label = inline.formset.model._meta.label
        allowed = PAGES[label][role] if label in INLINE_EDITABLE else "v"
        shown = (inline.has_add_permission, inline.has_change_permission, inline.has_delete_permission)
        assert shown == ("a" in allowed, "c" in allowed, "d" in allowed), label


def _actions_of(label: str, model: type[models.Model]) -> set[str]:
    return set().union(*(_expected_actions(label, model, role) for role in ROLES))


def _action_cases() -> list[Any]:
    return [
        pytest.param(label, model, action, id=f"{label}.{action}")
        for label, model in _registrations()
        if label not in LIST_ONLY
        for action in sorted(_actions_of(label, model))
    ]


NO_ACTION = "No action selected."


def _outcome(response: Any) -> str:
    """What the admin did with a posted action: refused it (403); did not run it ("refused": Django answers an action
    outside the user's choices as no action at all, and a list offering the user no action shows itself again); or
    ran it (a file, a confirmation page, or a redirect with the action's own message)."""
    if response.status_code == 403:
        return "403"
    if response.status_code == 302 and NO_ACTION in admin_messages(response):
        return "refused"
    if response.status_code == 200 and "admin/change_list.html" in {t.name for t in response.templates}:
        return "refused"
    return "ran"


def _row(model: type[models.Model], pk: Any) -> tuple[int, dict[str, Any] | None]:
    return model._default_manager.count(), model._default_manager.filter(pk=pk).values().first()


@pytest.mark.parametrize(("label", "model", "action"), _action_cases())
def test_each_role_can_run_only_the_admin_actions_the_table_offers_it_and_only_on_rows_it_sees(
    label: str, model: type[models.Model], action: str, client: Any
) -> None:
    """Every admin action, posted by every role on advisor A's row (or a row any reader sees): a role not offered the
    action cannot run it by posting its name, and another advisor running it on advisor A's row acts on nothing (an
    export without the row, no row changed)."""
    users = _users()
    owned = _client_owned(model)
    obj = (
        ROW_FOR_CLIENT[model](ClientFactory(advisor=users["advisor_a"])) if owned else OBJECT[label](users["advisor_a"])
    )
    changelist = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")

    got: dict[str, str] = {}
    expected: dict[str, str] = {}
    for role in ROLES:
        hidden = role in HIDDEN_FROM.get(label, set()) or (owned and role in ("advisor_b", "nobody"))
        if "v" not in PAGES[label][role]:
            expected[role] = "403"
        else:
            expected[role] = "ran" if action in _expected_actions(label, model, role) else "refused"
        client.force_login(users[role])
        before = _row(model, obj.pk)
        with transaction.atomic():
            response = client.post(changelist, {"action": action, "_selected_action": [obj.pk], "index": 0})
            got[role] = _outcome(response)
            if got[role] != "ran" or hidden:
                assert _row(model, obj.pk) == before, f"{role} changed the row: {got[role]}"
            if action == "export_selected" and got[role] == "ran":
                exported = b"".join(response.streaming_content) if response.streaming else response.content
                rows = len(exported.decode().strip().splitlines()) - 1  # less the header
                assert rows == (0 if hidden else 1), f"{role} exported {rows} rows: {exported!r}"
            transaction.set_rollback(True)
        client.logout()

    assert got == expected
