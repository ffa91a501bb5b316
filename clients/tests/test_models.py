import pytest
from django.core.exceptions import ValidationError
from django.db import connection

from accounts.tests.factories import AdvisorFactory, UserFactory
from clients.models import Client
from clients.scope import ClientScope
from clients.tests.factories import ClientFactory
from portfolio_site.testing import VALUE_TOO_LONG, refused_by

pytestmark = pytest.mark.django_db


def test_database_refuses_two_clients_whose_emails_differ_only_in_case() -> None:
    ClientFactory(email="maria@example.net")
    with refused_by("clients_client_email_ci_unique"):
        Client.objects.filter(pk=ClientFactory().pk).update(email="MARIA@example.net")


def test_database_refuses_a_base_currency_of_two_letters() -> None:
    with refused_by("clients_client_base_currency_iso"):
        ClientFactory(base_currency="EU", main_portfolio=None)


def test_database_refuses_a_base_currency_of_four_letters() -> None:
    # PostgreSQL's varchar(3) refuses a fourth letter before the check constraint sees it; SQLite has no lengths.
    with refused_by(VALUE_TOO_LONG if connection.vendor == "postgresql" else "clients_client_base_currency_iso"):
        ClientFactory(base_currency="EURO", main_portfolio=None)


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
    everyone = {ClientFactory(advisor=advisor), ClientFactory(advisor=AdvisorFactory())}  # not theirs to advise
    user = request.getfixturevalue(role_user)
    assert set(Client.objects.visible_to(user)) == everyone
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
