"""Fuzzing: schemathesis sends generated requests to every operation of our own OpenAPI schema, in-process.

Over WSGI (no server), authenticated with a real JWT (a superuser; the read operations again as an advisor so
that the scoped querysets are exercised), each operation its own pytest test with its own fresh login session:
an operation that ends the session (logout, logout-all, session revoke, password change, 2FA disable) starts
each example with a new one, so it never starves the others. Checks on every answer: no 5xx, the status code is
one the schema documents (429 included), the body and headers conform to the schema.

Per operation, schemathesis's explicit examples and coverage phase (boundary and invalid values, deterministic)
and FUZZ_MAX_EXAMPLES generated examples (default 3), derandomized: CI sends the same requests every time.
Budget: 4 minutes of one core: CI runs it once, on PostgreSQL, in two halves (FUZZ_SHARD=0/2 and 1/2, every
other test), each on a core once that core's suite has ended (FUZZ=1 turns it on; the two suites skip it). 210
tests (149 operations as a superuser, the 61 reads again as an advisor); measured at the default on PostgreSQL:
4 min 40 s alone on one core in CI, 6 min 40 s on a machine half as fast (2026-12-01). More:
    FUZZ=1 FUZZ_MAX_EXAMPLES=100 .venv/bin/pytest portfolio_site/tests/test_fuzz.py -q -x
"""

import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from accounts.models import User
from accounts.tests.factories import AdvisorFactory, SuperuserFactory, access_token_for
from clients.tests.factories import ClientFactory, PortfolioFactory

FUZZ_MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "3"))

if os.environ.get("FUZZ") != "1":
    # At collection, before the schema is built (about 7 s): a run without FUZZ=1 pays nothing for this module.
    pytest.skip("the API fuzz run is the PostgreSQL CI run's (FUZZ=1 turns it on)", allow_module_level=True)

app = get_wsgi_application()


# The schema as the API serves it (its view reads nothing from the database).
schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", app)


@pytest.fixture(autouse=True)
def _keep_the_test_connection() -> Iterator[None]:
    # Django's WSGI handler closes the database connection after each request, which would end the test's
    # transaction on PostgreSQL; Django's own test client lifts this the same way.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def advisor(db: Any) -> User:
    # Something for the list and detail operations to read, visible to the advisor as well.
    advisor = AdvisorFactory()
    PortfolioFactory(client=ClientFactory(advisor=advisor))
    return advisor


@pytest.fixture
def superuser(advisor: User) -> User:
    return SuperuserFactory()


def _call(case: Any, user: User) -> None:
    # A new login session per example, so that an operation that ends the caller's session (logout, logout-all,
    # session revoke, password change, 2FA disable) or changes its credentials never starves the next examples.
    case.call_and_validate(headers={"Authorization": f"Bearer {access_token_for(user)}"}, checks=CHECKS)


# What the API promises (no 5xx; documented statuses, content types, bodies and headers). Schemathesis's
# acceptance checks are left out: a schema-valid request naming an id that does not exist is rightly refused.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]

FUZZ_SETTINGS = settings(
    max_examples=FUZZ_MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


@schema.parametrize()
@FUZZ_SETTINGS
def test_every_operation_answers_as_documented_to_a_superuser(case: Any, superuser: User) -> None:
    _call(case, superuser)


@schema.include(method="GET").parametrize()
@FUZZ_SETTINGS
def test_every_read_answers_as_documented_to_an_advisor(case: Any, advisor: User) -> None:
    _call(case, advisor)
