"""The clients admin: scoped to what the user may see, writes through the services, latest history inline."""

import datetime
from typing import Any
from unittest import mock

import pytest
from django import test
from django.urls import reverse

from clients import services
from clients.models import Client
from clients.tests.factories import ClientFactory
from holdings.models import Allocation
from holdings.tests.factories import BuyFactory
from ledger.models import Transaction
from ledger.tests.factories import TransactionFactory
from portfolio_site.testing import admin_messages, changelist_ids, page_queries

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:clients_client_changelist"
ADD = "admin:clients_client_add"


def _change_url(client: Client) -> str:
    return reverse("admin:clients_client_change", args=[client.pk])


def _inline_rows(response: Any, model: type) -> list[Any]:
    """The rows an inline of the change page shows, in page order."""
    (inline,) = [inline for inline in response.context["inline_admin_formsets"] if inline.formset.model is model]
    return [form.instance for form in inline.formset.initial_forms]


def _form_data(client: test.Client, url: str, **fields: Any) -> dict[str, Any]:
    """What the browser would post from the page at `url`: the inlines' management forms and `fields`."""
    page = client.get(url)
    assert page.status_code == 200
    data: dict[str, Any] = {}
    for inline in page.context["inline_admin_formsets"]:
        prefix = inline.formset.prefix
        data |= {f"{prefix}-TOTAL_FORMS": 0, f"{prefix}-INITIAL_FORMS": 0, f"{prefix}-MAX_NUM_FORMS": 1000}
    return data | fields


def _new_client(**fields: Any) -> dict[str, Any]:
    return {"name": "Ada Lovelace", "email": "Ada@Example.org", "base_currency": "gbp", "is_active": "on"} | fields


def _add_history(owner: Client, count: int, *, date: datetime.date) -> None:
    """`count` buys (each with its settlement) and `count` deposits, one of them reversed, on `date`."""
    BuyFactory.create_batch(count, client=owner, date=date)
    deposits = TransactionFactory.create_batch(count - 1, client=owner, date=date)
    TransactionFactory(client=owner, date=date, reverses=deposits[0])


# --- Changelist -------------------------------------------------------------------------------------------------


def test_client_changelist_loads_with_the_same_query_count_for_5_and_50_rows(client, superuser, count_queries):
    client.force_login(superuser)
    url = reverse(CHANGELIST)
    ClientFactory.create_batch(5)
    page_queries(client, count_queries, url)  # warm up per-process caches (content types, ...)
    few = page_queries(client, count_queries, url)

    ClientFactory.create_batch(45)
    many = page_queries(client, count_queries, url)

    assert len(client.get(url).context["cl"].result_list) == 50
    assert few == many


def test_client_changelist_query_count_is_the_same_for_5_and_50_rows_for_an_advisor(client, advisor, count_queries):
    client.force_login(advisor)
    url = reverse(CHANGELIST)
    ClientFactory.create_batch(5, advisor=advisor)
    page_queries(client, count_queries, url)
    few = page_queries(client, count_queries, url)

    ClientFactory.create_batch(45, advisor=advisor)
    ClientFactory.create_batch(5)
    many = page_queries(client, count_queries, url)

    assert few == many


def test_client_changelist_shows_an_advisor_only_their_own_clients(client, advisor, other_advisor):
    own = ClientFactory.create_batch(2, advisor=advisor)
    ClientFactory(advisor=other_advisor)
    client.force_login(advisor)

    response = client.get(reverse(CHANGELIST))

    assert response.status_code == 200
    assert changelist_ids(response) == {c.pk for c in own}


@pytest.mark.parametrize("role", ["operations", "auditor", "superuser"])
def test_client_changelist_shows_every_client_to_those_who_see_all(client, request, role):
    clients = ClientFactory.create_batch(3)
    client.force_login(request.getfixturevalue(role))

    assert changelist_ids(client.get(reverse(CHANGELIST))) == {c.pk for c in clients}


def test_client_changelist_is_forbidden_to_a_user_in_no_group(client, nobody):
    ClientFactory()
    client.force_login(nobody)

    assert client.get(reverse(CHANGELIST)).status_code == 403


def test_client_changelist_advisor_filter_lists_only_advisors_of_visible_clients(
    client, operations, advisor, other_advisor
):
    ClientFactory(advisor=advisor)
    ClientFactory(advisor=other_advisor)
    client.force_login(operations)

    response = client.get(reverse(CHANGELIST))

    (advisor_filter,) = [spec for spec in response.context["cl"].filter_specs if spec.field_path == "advisor"]
    assert {pk for pk, _ in advisor_filter.lookup_choices} == {advisor.pk, other_advisor.pk}


def test_client_changelist_does_not_name_other_staff_to_an_advisor(client, advisor, other_advisor, operations):
    ClientFactory(advisor=advisor)
    ClientFactory(advisor=other_advisor)
    client.force_login(advisor)

    response = client.get(reverse(CHANGELIST))

    assert [spec.field_path for spec in response.context["cl"].filter_specs if spec.field_path == "advisor"] == []
    assert other_advisor.email not in response.text
    assert operations.email not in response.text


@pytest.mark.parametrize(("app_label", "model_name"), [("holdings", "allocation"), ("ledger", "transaction")])
def test_client_autocomplete_offers_an_advisor_only_their_own_clients(client, advisor, app_label, model_name):
    own = ClientFactory(advisor=advisor, name="Grace Own")
    ClientFactory(name="Grace Theirs")
    client.force_login(advisor)

    response = client.get(
        reverse("admin:autocomplete"),
        {"app_label": app_label, "model_name": model_name, "field_name": "client", "term": "Grace"},
    )

    assert response.status_code == 200
    assert [row["id"] for row in response.json()["results"]] == [str(own.pk)]


# --- Change page --------------------------------------------------------------------------------------------------


def test_another_advisors_client_page_redirects_an_advisor_to_the_admin_index(client, advisor, other_advisor):
    theirs = ClientFactory(advisor=other_advisor, name="Hidden Person")
    client.force_login(advisor)

    response = client.get(_change_url(theirs))

    assert response.status_code == 302
    assert response["Location"] == reverse("admin:index")
    assert "Hidden Person" not in client.get(response["Location"]).text
    assert client.get(reverse("admin:clients_client_history", args=[theirs.pk])).status_code == 302
    assert client.get(reverse("admin:clients_client_delete", args=[theirs.pk])).status_code == 403  # no delete perm


def test_client_change_page_shows_the_latest_allocations_and_transactions_inline(client, advisor):
    owner = ClientFactory(advisor=advisor)
    _add_history(owner, 3, date=datetime.date(2026, 2, 1))
    client.force_login(advisor)

    response = client.get(_change_url(owner))

    assert response.status_code == 200
    assert _inline_rows(response, Allocation) == list(Allocation.objects.filter(client=owner))
    assert _inline_rows(response, Transaction) == list(Transaction.objects.filter(client=owner))
    assert "Latest 20 allocations" in response.text
    assert "Latest 20 transactions" in response.text


def test_client_change_page_inlines_show_at_most_the_latest_20_rows_of_each(client, superuser):
    owner = ClientFactory()
    _add_history(owner, 15, date=datetime.date(2026, 1, 1))
    _add_history(owner, 15, date=datetime.date(2026, 3, 1))
    client.force_login(superuser)

    response = client.get(_change_url(owner))

    allocations = _inline_rows(response, Allocation)
    transactions = _inline_rows(response, Transaction)
    assert allocations == list(Allocation.objects.filter(client=owner)[:20])
    assert transactions == list(Transaction.objects.filter(client=owner)[:20])
    assert {a.date for a in allocations[:15]} == {datetime.date(2026, 3, 1)}


def test_client_change_page_inlines_are_not_crowded_out_by_other_clients_newer_rows(client, superuser):
    owner = ClientFactory()
    _add_history(owner, 3, date=datetime.date(2026, 1, 1))
    _add_history(ClientFactory(), 25, date=datetime.date(2026, 6, 1))
    client.force_login(superuser)

    response = client.get(_change_url(owner))

    assert len(_inline_rows(response, Allocation)) == 3
    assert len(_inline_rows(response, Transaction)) == 6  # 3 settlements, 3 deposits (one a reversal)


def test_client_change_page_query_count_is_the_same_for_5_and_25_rows_of_history(client, superuser, count_queries):
    owner = ClientFactory()
    client.force_login(superuser)
    url = _change_url(owner)
    page_queries(client, count_queries, url)  # warm up per-process caches (content types, ...)
    # Each count is of the first page after the writes: it refreshes the derived tables the writes made stale
    # (daily values, position snapshots), which must not grow with the history either.
    _add_history(owner, 5, date=datetime.date(2026, 1, 1))
    few = page_queries(client, count_queries, url)

    _add_history(owner, 20, date=datetime.date(2026, 2, 1))
    many = page_queries(client, count_queries, url)

    assert few == many


def test_client_change_page_inlines_are_read_only_but_the_allocations(client, operations):
    owner = ClientFactory()
    _add_history(owner, 2, date=datetime.date(2026, 1, 1))
    client.force_login(operations)

    response = client.get(_change_url(owner))

    # Allocations are edited there through the holdings services (holdings/tests/test_admin_client_allocations.py).
    for inline in response.context["inline_admin_formsets"]:
        editable = inline.formset.model is Allocation
        assert (inline.has_add_permission, inline.has_change_permission, inline.has_delete_permission) == (
            editable,
            editable,
            editable,
        )


def test_changing_a_client_in_the_admin_goes_through_client_update(client, advisor):
    owner = ClientFactory(advisor=advisor, name="Old Name")
    client.force_login(advisor)
    url = _change_url(owner)
    data = _form_data(client, url, **_new_client(name="New Name", email=owner.email, base_currency="EUR"))

    with mock.patch.object(services, "client_update", wraps=services.client_update) as update:
        response = client.post(url, data)

    assert response.status_code == 302
    update.assert_called_once()
    assert update.call_args.kwargs["actor"] == advisor
    owner.refresh_from_db()
    assert owner.name == "New Name"


# --- Add -------------------------------------------------------------------------------------------------------


def test_adding_a_client_in_the_admin_goes_through_client_create(client, operations, advisor):
    client.force_login(operations)
    url = reverse(ADD)
    data = _form_data(client, url, **_new_client(advisor=advisor.pk))

    with mock.patch.object(services, "client_create", wraps=services.client_create) as create:
        response = client.post(url, data)

    assert response.status_code == 302
    create.assert_called_once()
    assert create.call_args.kwargs["actor"] == operations
    created = Client.objects.get()
    assert (created.name, created.email, created.base_currency, created.advisor) == (
        "Ada Lovelace",
        "ada@example.org",
        "GBP",
        advisor,
    )


def test_an_advisor_adding_a_client_in_the_admin_becomes_its_advisor(client, advisor):
    client.force_login(advisor)
    url = reverse(ADD)

    response = client.post(url, _form_data(client, url, **_new_client()))

    assert response.status_code == 302
    assert Client.objects.get().advisor == advisor


def test_an_advisor_cannot_assign_a_new_client_to_another_advisor(client, advisor, other_advisor):
    client.force_login(advisor)
    url = reverse(ADD)

    client.post(url, _form_data(client, url, **_new_client(advisor=other_advisor.pk)))

    assert not Client.objects.filter(advisor=other_advisor).exists()
    assert list(Client.objects.values_list("advisor", flat=True)) == [advisor.pk]


def test_an_advisor_cannot_hand_their_client_over_to_another_advisor(client, advisor, other_advisor):
    owner = ClientFactory(advisor=advisor)
    client.force_login(advisor)
    url = _change_url(owner)

    client.post(url, _form_data(client, url, **_new_client(email=owner.email, advisor=other_advisor.pk)))

    owner.refresh_from_db()
    assert owner.advisor == advisor


def test_the_advisor_field_is_read_only_for_an_advisor_who_may_not_look_up_staff(client, advisor):
    client.force_login(advisor)

    response = client.get(reverse(ADD))
    lookup = client.get(
        reverse("admin:autocomplete"),
        {"app_label": "clients", "model_name": "client", "field_name": "advisor", "term": ""},
    )

    assert "advisor" not in response.context["adminform"].form.fields
    assert lookup.status_code == 403


def test_operations_may_reassign_a_client_to_another_advisor(client, operations, advisor, other_advisor):
    owner = ClientFactory(advisor=advisor)
    client.force_login(operations)
    url = _change_url(owner)

    response = client.post(url, _form_data(client, url, **_new_client(email=owner.email, advisor=other_advisor.pk)))

    assert response.status_code == 302
    owner.refresh_from_db()
    assert owner.advisor == other_advisor


def test_assigning_a_client_to_an_inactive_advisor_shows_the_service_error(client, operations):
    inactive = ClientFactory().advisor
    inactive.is_active = False
    inactive.save()
    client.force_login(operations)
    url = reverse(ADD)

    response = client.post(url, _form_data(client, url, **_new_client(advisor=inactive.pk)))

    assert response.status_code == 302
    assert response["Location"] == url
    assert "Not saved: The advisor's account is not active." in admin_messages(response)
    assert not Client.objects.filter(email="ada@example.org").exists()


def test_client_add_page_is_forbidden_to_an_auditor_instead_of_redirecting_to_itself(client, auditor):
    client.force_login(auditor)

    assert client.get(reverse(ADD)).status_code == 403


def test_client_add_page_is_forbidden_to_a_user_in_no_group(client, nobody):
    client.force_login(nobody)

    assert client.get(reverse(ADD)).status_code == 403


def test_an_auditor_cannot_save_a_client_change(client, auditor):
    owner = ClientFactory(name="Unchanged")
    client.force_login(auditor)

    response = client.post(_change_url(owner), _new_client(email=owner.email))

    assert response.status_code == 403
    owner.refresh_from_db()
    assert owner.name == "Unchanged"


# --- Delete ----------------------------------------------------------------------------------------------------


def test_deleting_a_client_without_history_in_the_admin_goes_through_client_delete(client, operations):
    owner = ClientFactory()
    client.force_login(operations)

    with mock.patch.object(services, "client_delete", wraps=services.client_delete) as delete:
        response = client.post(reverse("admin:clients_client_delete", args=[owner.pk]), {"post": "yes"})

    assert response.status_code == 302
    delete.assert_called_once()
    assert not Client.objects.filter(pk=owner.pk).exists()


def test_a_client_with_transactions_cannot_be_deleted_in_the_admin(client, operations):
    owner = ClientFactory()
    TransactionFactory(client=owner)
    client.force_login(operations)

    response = client.post(reverse("admin:clients_client_delete", args=[owner.pk]), {"post": "yes"})

    assert response.status_code == 200  # Django's "cannot delete: protected objects" page
    assert Client.objects.filter(pk=owner.pk).exists()


# --- Deactivating and reactivating --------------------------------------------------------------------------------


def _client_action(client: test.Client, action: str, *clients: Client) -> Any:
    return client.post(reverse(CHANGELIST), {"action": action, "_selected_action": [c.pk for c in clients]})


def test_deactivate_action_deactivates_the_selected_clients_through_client_update(client, advisor):
    first, second = ClientFactory(advisor=advisor), ClientFactory(advisor=advisor)
    untouched = ClientFactory(advisor=advisor)
    client.force_login(advisor)

    with mock.patch.object(services, "client_update", wraps=services.client_update) as update:
        response = _client_action(client, "deactivate_selected", first, second)

    assert response.status_code == 302
    assert update.call_count == 2
    assert set(Client.objects.filter(is_active=False).values_list("pk", flat=True)) == {first.pk, second.pk}
    assert Client.objects.get(pk=untouched.pk).is_active
    assert "Deactivated 2 client(s)." in admin_messages(response)


def test_reactivate_action_reactivates_only_inactive_clients(client, operations):
    inactive, active = ClientFactory(is_active=False), ClientFactory(is_active=True)
    client.force_login(operations)

    response = _client_action(client, "reactivate_selected", inactive, active)

    assert Client.objects.filter(is_active=True).count() == 2
    assert "Reactivated 1 client(s)." in admin_messages(response)


def test_deactivate_action_is_not_offered_to_an_auditor_and_refused_if_posted(client, auditor):
    target = ClientFactory()
    client.force_login(auditor)

    listed = client.get(reverse(CHANGELIST))
    offered = [name for name, _ in listed.context["action_form"].fields["action"].choices if name]
    _client_action(client, "deactivate_selected", target)

    assert offered == ["export_selected"]
    assert Client.objects.get(pk=target.pk).is_active


def test_deactivate_action_cannot_reach_another_advisors_client(client, advisor, other_advisor):
    theirs = ClientFactory(advisor=other_advisor)
    client.force_login(advisor)

    _client_action(client, "deactivate_selected", theirs)

    assert Client.objects.get(pk=theirs.pk).is_active
