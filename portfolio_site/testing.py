"""Helpers for the admin tests of every app (fixtures live in the root conftest.py)."""

from collections.abc import Callable
from typing import Any

from django import test
from django.contrib.messages import get_messages


def admin_messages(response: Any) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def changelist_ids(response: Any) -> set[int]:
    return {row.pk for row in response.context["cl"].result_list}


def page_queries(client: test.Client, count_queries: Callable[[Callable[[], Any]], int], url: str) -> int:
    """Queries to load `url` with a 200."""

    def load() -> None:
        assert client.get(url).status_code == 200

    return count_queries(load)
