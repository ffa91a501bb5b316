"""Helpers for the tests of every app (fixtures live in the root conftest.py)."""

from collections.abc import Callable
from typing import Any

from django import test
from django.contrib.messages import get_messages

# A django-redis cache pointing at a closed port: what the app sees while Redis is down.
REDIS_DOWN = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": "redis://127.0.0.1:1/0",
        "OPTIONS": {
            "CLIENT_CLASS": "django_redis.client.DefaultClient",
            "IGNORE_EXCEPTIONS": True,
            "SOCKET_CONNECT_TIMEOUT": 0.1,
            "SOCKET_TIMEOUT": 0.1,
        },
    }
}


def admin_messages(response: Any) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def changelist_ids(response: Any) -> set[int]:
    return {row.pk for row in response.context["cl"].result_list}


def page_queries(client: test.Client, count_queries: Callable[[Callable[[], Any]], int], url: str) -> int:
    """Queries to load `url` with a 200."""

    def load() -> None:
        assert client.get(url).status_code == 200

    return count_queries(load)


def run_at_once(work: Callable[[int], Any], workers: int, *, timeout: float = 30) -> None:
    """Runs `work(n)` in `workers` threads released together, each closing its own database connection:
    what several requests arriving at once look like (meaningful on PostgreSQL, where they really overlap)."""
    import threading

    from django.db import connection

    start = threading.Barrier(workers)

    def run(n: int) -> None:
        try:
            start.wait()
            work(n)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
