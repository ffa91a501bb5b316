from typing import Any

import pytest

from clients.models import Client
from clients.tests.factories import ClientFactory
from ledger.tests.factories import TransactionFactory

pytestmark = pytest.mark.django_db
URL = "/api/v1/clients/"


def ids(response: Any) -> set[int]:
    assert response.status_code == 200, response.content
    return {row["id"] for row in response.json()["results"]}


def new_client(**extra: Any) -> dict[str, Any]:
    return {"name": "Maria Gonzalez", "email": "Maria@Example.net", "base_currency": "eur", **extra}


def test_advisor_lists_and_reads_only_their_own_clients(advisor, other_advisor, api) -> None:
    mine = ClientFactory(advisor=advisor)
    theirs = ClientFactory(advisor=other_advisor)
    client = api(advisor)
    assert ids(client.get(URL)) == {mine.pk}
    assert client.get(f"{URL}{mine.pk}/").status_code == 200
    assert client.get(f"{URL}{theirs.pk}/").status_code == 404
    assert ids(client.get(f"{URL}?search={theirs.name}")) == set()
    assert ids(client.get(f"{URL}?advisor={other_advisor.pk}")) == set()


@pytest.mark.parametrize("role_user", ["operations", "auditor", "superuser"])
def test_all_seeing_roles_list_every_client(role_user: str, request, api) -> None:
    clients = ClientFactory.create_batch(3)
    assert ids(api(request.getfixturevalue(role_user)).get(URL)) == {c.pk for c in clients}


def test_staff_in_no_group_are_refused_client_data(nobody, api) -> None:
    client = ClientFactory()
    assert api(nobody).get(URL).status_code == 403
    assert api(nobody).get(f"{URL}{client.pk}/").status_code == 403


def test_anonymous_callers_get_401() -> None:
    from rest_framework.test import APIClient

    assert APIClient().get(URL).status_code == 401


def test_advisor_creates_a_client_for_themselves_by_default(advisor, api) -> None:
    response = api(advisor).post(URL, new_client())
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["advisor"], body["email"], body["base_currency"]) == (advisor.pk, "maria@example.net", "EUR")


def test_advisor_cannot_create_or_move_a_client_to_another_advisor(advisor, other_advisor, api) -> None:
    assert api(advisor).post(URL, new_client(advisor=other_advisor.pk)).status_code == 403
    mine = ClientFactory(advisor=advisor)
    assert api(advisor).patch(f"{URL}{mine.pk}/", {"advisor": other_advisor.pk}).status_code == 403
    mine.refresh_from_db()
    assert mine.advisor == advisor


def test_operations_must_name_the_advisor(operations, advisor, api) -> None:
    missing = api(operations).post(URL, new_client())
    assert missing.status_code == 400
    assert "advisor" in missing.json()
    assert api(operations).post(URL, new_client(advisor=advisor.pk)).status_code == 201


def test_auditor_cannot_write_clients(auditor, advisor, api) -> None:
    client = ClientFactory()
    assert api(auditor).post(URL, new_client(advisor=advisor.pk)).status_code == 403
    assert api(auditor).patch(f"{URL}{client.pk}/", {"name": "X"}).status_code == 403
    assert api(auditor).delete(f"{URL}{client.pk}/").status_code == 403


def test_invalid_client_fields_are_reported_per_field(operations, advisor, api) -> None:
    ClientFactory(email="taken@example.net")
    response = api(operations).post(
        URL, new_client(email="TAKEN@example.net", base_currency="XYZ", phone="call me", advisor=advisor.pk)
    )
    assert response.status_code == 400
    assert set(response.json()) == {"email", "base_currency", "phone"}


def test_deleting_a_client_with_ledger_history_is_a_conflict(operations, api) -> None:
    tx = TransactionFactory()
    response = api(operations).delete(f"{URL}{tx.client_id}/")
    assert response.status_code == 409
    assert "detail" in response.json()
    assert Client.objects.filter(pk=tx.client_id).exists()


def test_deleting_a_client_without_history_is_allowed_for_operations(operations, advisor, api) -> None:
    client = ClientFactory()
    assert api(advisor).delete(f"{URL}{client.pk}/").status_code in {403, 404}
    assert api(operations).delete(f"{URL}{client.pk}/").status_code == 204
    assert not Client.objects.filter(pk=client.pk).exists()


def test_clients_filter_by_active_currency_and_search(operations, api) -> None:
    euro = ClientFactory(name="Hartmann Family Office", base_currency="EUR")
    dollar = ClientFactory(name="Kenji Watanabe", base_currency="USD", is_active=False)
    client = api(operations)
    assert ids(client.get(f"{URL}?base_currency=USD")) == {dollar.pk}
    assert ids(client.get(f"{URL}?is_active=true")) == {euro.pk}
    assert ids(client.get(f"{URL}?search=hartmann")) == {euro.pk}
    assert ids(client.get(f"{URL}?advisor={euro.advisor_id}")) == {euro.pk}
    names = [row["name"] for row in client.get(f"{URL}?ordering=-name").json()["results"]]
    assert names == ["Kenji Watanabe", "Hartmann Family Office"]


def test_page_size_is_capped(operations, api) -> None:
    ClientFactory.create_batch(3)
    body = api(operations).get(f"{URL}?page_size=1&page=2").json()
    assert (body["count"], len(body["results"])) == (3, 1)
    assert api(operations).get(f"{URL}?page=99").status_code == 404


def test_clients_list_query_count_does_not_grow_with_rows(advisor, api, assert_list_queries_constant) -> None:
    assert_list_queries_constant(api(advisor), URL, lambda n: ClientFactory.create_batch(n, advisor=advisor))
