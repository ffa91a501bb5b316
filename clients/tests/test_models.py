import pytest
from django.core.exceptions import ValidationError
from django.db import DataError, IntegrityError, transaction

from accounts.tests.factories import AdvisorFactory, UserFactory
from clients.models import Client
from clients.scope import ClientScope
from clients.tests.factories import ClientFactory

pytestmark = pytest.mark.django_db


def test_database_refuses_two_clients_whose_emails_differ_only_in_case() -> None:
    ClientFactory(email="maria@example.net")
    with pytest.raises(IntegrityError), transaction.atomic():
        Client.objects.filter(pk=ClientFactory().pk).update(email="MARIA@example.net")


@pytest.mark.parametrize("currency", ["EU", "EURO"])
def test_database_refuses_a_base_currency_that_is_not_three_letters(currency: str) -> None:
    with pytest.raises((IntegrityError, DataError)), transaction.atomic():
        ClientFactory(base_currency=currency)


def test_client_clean_checks_currency_phone_and_email() -> None:
    client = ClientFactory.build(
        advisor=AdvisorFactory(), email="Maria@Example.NET", base_currency="xyz", phone="call me"
    )
    with pytest.raises(ValidationError) as error:
        client.full_clean()
    assert set(error.value.message_dict) == {"base_currency", "phone"}
    assert client.email == "maria@example.net"


def test_advisor_sees_only_the_clients_they_advise(advisor, other_advisor) -> None:
    mine = ClientFactory(advisor=advisor)
    ClientFactory(advisor=other_advisor)
    assert list(Client.objects.visible_to(advisor)) == [mine]
    assert ClientScope.of(advisor).allows(mine)
    assert not ClientScope.of(other_advisor).allows(mine)


@pytest.mark.parametrize("role_user", ["operations", "auditor", "superuser"])
def test_operations_auditors_and_superusers_see_every_client(role_user: str, request, advisor) -> None:
    ClientFactory.create_batch(2)
    user = request.getfixturevalue(role_user)
    assert Client.objects.visible_to(user).count() == 2
    assert ClientScope.of(user).cache_key == "all"


def test_staff_in_no_group_see_no_client(nobody) -> None:
    ClientFactory(advisor=AdvisorFactory())
    assert not Client.objects.visible_to(nobody).exists()
    assert ClientScope.of(nobody).cache_key == "none"


def test_anonymous_users_see_no_client() -> None:
    from django.contrib.auth.models import AnonymousUser

    ClientFactory()
    assert not Client.objects.visible_to(AnonymousUser()).exists()


def test_visibility_keys_differ_between_advisors(advisor, other_advisor) -> None:
    assert ClientScope.of(advisor).cache_key != ClientScope.of(other_advisor).cache_key
    assert ClientScope.of(UserFactory(is_superuser=True)).cache_key == "all"
