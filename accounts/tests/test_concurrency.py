"""Only meaningful on PostgreSQL, where two requests really run at once."""

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied

from accounts.models import User
from accounts.services import user_register
from portfolio_site.testing import run_at_once

STRONG = "a-long-and-unusual-passphrase-42"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_simultaneous_first_registrations_make_one_administrator() -> None:
    outcomes: list[str] = []

    def register(n: int) -> None:
        try:
            user_register(actor=AnonymousUser(), email=f"founder{n}@example.com", password=STRONG)
            outcomes.append("created")
        except PermissionDenied:
            outcomes.append("refused")

    run_at_once(register, 2)

    assert sorted(outcomes) == ["created", "refused"]
    assert User.objects.filter(is_superuser=True).count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_simultaneous_hits_on_one_counter_are_all_counted() -> None:
    import datetime

    from accounts.services.counters import counter_get, counter_hit

    threads_count, hits_each = 4, 10

    def hit(_: int) -> None:
        for _ in range(hits_each):
            counter_hit(key="login-failures:x", window=datetime.timedelta(minutes=5))

    run_at_once(hit, threads_count)

    count = counter_get(key="login-failures:x")
    assert count is not None
    assert count.count == threads_count * hits_each
