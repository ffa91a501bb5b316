"""Shared fixtures: API clients per role, a clean cache per test, and a query-count helper."""

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from accounts.tests.factories import AdvisorFactory, AuditorFactory, OperationsFactory, SuperuserFactory, UserFactory


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from django.conf import settings

    on_postgres = settings.DATABASES["default"]["ENGINE"].endswith("postgresql")
    skip = pytest.mark.skip(reason="needs PostgreSQL: set DATABASE_URL")
    for item in items:
        if "postgres" in item.keywords and not on_postgres:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _clean_cache() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


def api_client_for(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def superuser(db: None) -> Any:
    return SuperuserFactory()


@pytest.fixture
def advisor(db: None) -> Any:
    return AdvisorFactory()


@pytest.fixture
def other_advisor(db: None) -> Any:
    return AdvisorFactory()


@pytest.fixture
def operations(db: None) -> Any:
    return OperationsFactory()


@pytest.fixture
def auditor(db: None) -> Any:
    return AuditorFactory()


@pytest.fixture
def nobody(db: None) -> Any:
    """Staff in no group and not a superuser: sees no client data."""
    return UserFactory()


@pytest.fixture
def api() -> Callable[[Any], APIClient]:
    return api_client_for


@pytest.fixture
def count_queries() -> Callable[[Callable[[], Any]], int]:
    def run(action: Callable[[], Any]) -> int:
        with CaptureQueriesContext(connection) as context:
            action()
        return len(context.captured_queries)

    return run
