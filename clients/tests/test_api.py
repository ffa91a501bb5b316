from typing import Any

import pytest

from accounts.tests.factories import AdvisorFactory, OperationsFactory
from clients.models import Client
from clients.tests.factories import ClientFactory
from ledger.tests.factories import TransactionFactory

pytestmark = pytest.mark.django_db
URL = "/api/v1/clients/"
UNKNOWN_PK = 987654321


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
    assert ids(client.get(f"{URL}?advisor={advisor.pk}")) == {mine.pk}


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


def test_advisor_naming_another_advisor_is_refused_like_an_unknown_user(advisor, other_advisor, api) -> None:
    client = api(advisor)
    mine = ClientFactory(advisor=advisor)
    for other, unknown in [
        (client.post(URL, new_client(advisor=other_advisor.pk)), client.post(URL, new_client(advisor=UNKNOWN_PK))),
        (
            client.patch(f"{URL}{mine.pk}/", {"advisor": other_advisor.pk}),
            client.patch(f"{URL}{mine.pk}/", {"advisor": UNKNOWN_PK}),
        ),
    ]:
        assert other.status_code == unknown.status_code == 400
        assert other.json() == {"advisor": [f'Invalid pk "{other_advisor.pk}" - object does not exist.']}
        assert unknown.json() == {"advisor": [f'Invalid pk "{UNKNOWN_PK}" - object does not exist.']}
    mine.refresh_from_db()
    assert mine.advisor == advisor
    assert not Client.objects.filter(email="maria@example.net").exists()


def test_advisor_filtering_by_another_advisor_answers_like_an_unknown_user(advisor, other_advisor, api) -> None:
    ClientFactory(advisor=other_advisor)
    client = api(advisor)
    other = client.get(f"{URL}?advisor={other_advisor.pk}")
    unknown = client.get(f"{URL}?advisor={UNKNOWN_PK}")
    assert other.status_code == unknown.status_code == 400
    assert other.json() == unknown.json()


def test_operations_may_name_and_filter_by_any_advisor(operations, advisor, other_advisor, api) -> None:
    theirs = ClientFactory(advisor=other_advisor)
    client = api(operations)
    assert ids(client.get(f"{URL}?advisor={other_advisor.pk}")) == {theirs.pk}
    assert client.patch(f"{URL}{theirs.pk}/", {"advisor": advisor.pk}).status_code == 200
    assert ids(client.get(f"{URL}?advisor={advisor.pk}")) == {theirs.pk}


def test_operations_may_filter_by_a_deactivated_advisor_but_not_name_one(operations, advisor, api) -> None:
    departed = AdvisorFactory(is_active=False)
    theirs = ClientFactory(advisor=advisor)
    Client.objects.filter(pk=theirs.pk).update(advisor=departed)
    client = api(operations)
    # Finding a departed advisor's clients is how Operations hands them over.
    assert ids(client.get(f"{URL}?advisor={departed.pk}")) == {theirs.pk}
    refused = client.post(URL, new_client(advisor=departed.pk))
    assert refused.status_code == 400
    assert "advisor" in refused.json()


def test_browsable_api_forms_show_an_advisor_no_other_staff(advisor, api) -> None:
    others = [
        AdvisorFactory(email="colleague@example.com", full_name="Ophelia Colleague"),
        OperationsFactory(email="backoffice@example.com", full_name="Bartholomew Backoffice"),
    ]
    ClientFactory(advisor=others[0])
    response = api(advisor).get(URL, HTTP_ACCEPT="text/html")
    assert response.status_code == 200
    html = response.content.decode()
    # The forms are there (the advisor's own entry proves it), just without anyone else in them.
    assert f'<option value="{advisor.pk}"' in html
    for user in others:
        assert user.email not in html
        assert user.full_name not in html
        assert f'<option value="{user.pk}"' not in html


def test_browsable_api_forms_show_operations_every_advisor(operations, advisor, api) -> None:
    html = api(operations).get(URL, HTTP_ACCEPT="text/html").content.decode()
    assert f'<option value="{advisor.pk}"' in html


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
