"""Shared fixtures: API clients per role, a clean cache per test, and a query-count helper."""

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from accounts.tests.factories import AdvisorFactory, AuditorFactory, OperationsFactory, SuperuserFactory, UserFactory
from portfolio_site.counting import forget_estimates


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from django.conf import settings

    on_postgres = settings.DATABASES["default"]["ENGINE"].endswith("postgresql")
    skip = pytest.mark.skip(reason="needs PostgreSQL: set DATABASE_URL")
    for item in items:
        if "postgres" in item.keywords and not on_postgres:
            item.add_marker(skip)
    _fuzz_shard(config, items)


def _fuzz_shard(config: pytest.Config, items: list[pytest.Item]) -> None:
    """FUZZ_SHARD=i/n: this run takes every n-th fuzz test from the i-th (CI splits the fuzz run over its two cores,
    each after its suite); every other test is kept."""
    shard = os.environ.get("FUZZ_SHARD")
    if not shard:
        return
    index, count = (int(part) for part in shard.split("/"))
    fuzz = [item for item in items if item.path.name == "test_fuzz.py"]
    dropped = {id(item) for item in fuzz} - {id(item) for item in fuzz[index::count]}
    config.hook.pytest_deselected(items=[item for item in items if id(item) in dropped])
    items[:] = [item for item in items if id(item) not in dropped]


class AdminClient(Client):
    """Django's test client whose `force_login` opens an admin login session, as the admin's login form does
    (minus the password), so that the Django session is bound to a live `LoginSession`."""

    def force_login(self, user: Any, backend: str | None = None) -> None:
        from accounts.models import LoginSession
        from accounts.services.events import ClientInfo
        from accounts.services.sessions import session_start
        from accounts.web import LOGIN_SESSION_KEY

        super().force_login(user, backend)
        login_session, _ = session_start(
            user=user, client=ClientInfo(ip="127.0.0.1", user_agent="pytest"), channel=LoginSession.Channel.ADMIN
        )
        session = self.session
        session[LOGIN_SESSION_KEY] = str(login_session.id)
        session.save()


@pytest.fixture
def client() -> AdminClient:
    return AdminClient()


@pytest.fixture(autouse=True)
def _clean_cache() -> Iterator[None]:
    # The shared cache, and the row estimates this process keeps (portfolio_site.counting): each test reads its own.
    cache.clear()
    forget_estimates()
    yield
    cache.clear()


def api_client_for(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def jobs_as_on_a_worker() -> Iterator[None]:
    """In-process jobs keep their failures in their results, as on a worker, instead of raising them into the test:
    Celery's eager retries re-enter `apply` with the app's default, so a retried job needs this to reach its end."""
    from portfolio_site.celery import app

    app.conf.task_eager_propagates, previous = False, app.conf.task_eager_propagates
    yield
    app.conf.task_eager_propagates = previous


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


@pytest.fixture
def assert_list_queries_constant(count_queries: Callable[[Callable[[], Any]], int]) -> Callable[..., None]:
    """Asserts that GET `url` costs as many queries with 5 rows as with 50 (no N+1)."""

    def check(client: APIClient, url: str, make_rows: Callable[[int], Any]) -> None:
        def measure() -> int:
            # A fresh user object, as each real request has: role and permission look-ups are counted.
            user = client.handler._force_user  # type: ignore[attr-defined]
            client.force_authenticate(type(user).objects.get(pk=user.pk))
            cache.clear()
            forget_estimates()
            return count_queries(lambda: _ok(client.get(url)))

        make_rows(5)
        with_five = measure()
        make_rows(45)
        with_fifty = measure()
        assert with_five == with_fifty, f"{url}: {with_five} queries for 5 rows, {with_fifty} for 50"

    return check


def _ok(response: Any) -> None:
    assert response.status_code == 200, response.content
    assert response.json()["count"] >= 5


_role_grants: list[Callable[[Any, Any], None]] = []
_migrated_apps: list[Any] = []


@pytest.fixture
def staff_roles(transactional_db: None) -> None:
    """The staff roles with their permissions, as the migrations grant them.

    A transactional test starts from a flushed database: the content types and permissions come back (Django
    recreates them after a flush) but the groups the data migrations made do not. Re-running those migrations'
    own grant functions (every one that calls `grant_role_permissions`), rather than a copy of their lists,
    keeps an advisor here exactly what an advisor is in production."""
    from django.db.migrations.loader import MigrationLoader
    from django.db.migrations.operations.special import RunPython

    if not _migrated_apps:
        loader = MigrationLoader(connection)
        _migrated_apps.append(loader.project_state().apps)
        for key in _plan(loader):
            for operation in loader.graph.nodes[key].operations:
                code: Any = getattr(operation, "code", None)
                if isinstance(operation, RunPython) and "grant_role_permissions" in code.__code__.co_names:
                    _role_grants.append(operation.code)
    for grant in _role_grants:
        grant(_migrated_apps[0], None)


def _plan(loader: Any) -> list[tuple[str, str]]:
    """Every migration, each after those it depends on."""
    plan: list[tuple[str, str]] = []
    for leaf in loader.graph.leaf_nodes():
        plan.extend(key for key in loader.graph.forwards_plan(leaf) if key not in plan)
    return plan


@pytest.fixture(params=["advisor", "superuser"])
def writer(request: pytest.FixtureRequest, staff_roles: None) -> Any:
    """Who writes in a transactional (concurrency) test: an advisor in the real Advisors role, writing for their
    own client (`writers_client`), or a superuser."""
    return AdvisorFactory() if request.param == "advisor" else SuperuserFactory()


@pytest.fixture
def writers_client(writer: Any) -> Any:
    """A client whose writes `writer` may make: theirs to advise, or another advisor's for a superuser."""
    from clients.tests.factories import ClientFactory

    return ClientFactory(advisor=AdvisorFactory() if writer.is_superuser else writer, base_currency="EUR")
