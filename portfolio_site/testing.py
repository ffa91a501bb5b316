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
