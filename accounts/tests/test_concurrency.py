"""Only meaningful on PostgreSQL, where two requests really run at once."""

import threading

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied
from django.db import connection

from accounts.models import User
from accounts.services import user_register

STRONG = "a-long-and-unusual-passphrase-42"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_simultaneous_first_registrations_make_one_administrator() -> None:
    start = threading.Barrier(2)
    outcomes: list[str] = []

    def register(n: int) -> None:
        try:
            start.wait()
            user_register(actor=AnonymousUser(), email=f"founder{n}@example.com", password=STRONG)
            outcomes.append("created")
        except PermissionDenied:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=register, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(outcomes) == ["created", "refused"]
    assert User.objects.filter(is_superuser=True).count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_simultaneous_hits_on_one_counter_are_all_counted() -> None:
    import datetime

    from accounts.services.counters import counter_get, counter_hit

    threads_count, hits_each = 4, 10
    start = threading.Barrier(threads_count)

    def hit() -> None:
        try:
            start.wait()
            for _ in range(hits_each):
                counter_hit(key="login-failures:x", window=datetime.timedelta(minutes=5))
        finally:
            connection.close()

    threads = [threading.Thread(target=hit) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    count = counter_get(key="login-failures:x")
    assert count is not None
    assert count.count == threads_count * hits_each
