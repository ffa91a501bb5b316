from io import StringIO

import pytest
from django.core.management import call_command

from accounts.models import User
from clients.models import Client
from holdings.management.commands.seed_demo import ADMIN_EMAIL
from holdings.models import Allocation, Price
from ledger.selectors import client_balances

pytestmark = pytest.mark.django_db


def run() -> str:
    out = StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


def test_demo_data_loads_once_and_prints_a_working_admin_password_once() -> None:
    first = run()
    password = first.split("password: ")[1].split()[0]
    assert User.objects.get(email=ADMIN_EMAIL).check_password(password)
    counts = (Client.objects.count(), Allocation.objects.count(), Price.objects.count())
    second = run()
    assert "already loaded" in second
    assert password not in second
    assert (Client.objects.count(), Allocation.objects.count(), Price.objects.count()) == counts


def test_demo_data_respects_the_money_rules() -> None:
    run()
    assert Client.objects.count() == 6
    assert all(allocation.settlement_id for allocation in Allocation.objects.filter(kind__in=["buy", "sell"]))
    for client in Client.objects.all():
        assert all(amount >= 0 for amount in client_balances(client_id=client.pk).values())
    advisors = User.objects.filter(groups__name="Advisors")
    assert set(Client.objects.values_list("advisor", flat=True)) <= set(advisors.values_list("pk", flat=True))
