"""The admin and the API docs carry a content security policy that allows nothing from another host, and the pages
still work under it: every script is a file of this site or carries the request's nonce, as does every style block,
and no element has an inline style or event handler (which no nonce can allow)."""

import re
from html.parser import HTMLParser
from typing import Any

import pytest
from django.test import Client as DjangoClient
from django.urls import reverse

from accounts.tests.factories import PASSWORD, SuperuserFactory, UserFactory
from accounts.tests.test_admin_login import enable_two_factor
from clients.tests.factories import ClientFactory
from holdings.tests.factories import BuyFactory
from ledger.tests.factories import TransactionFactory

pytestmark = pytest.mark.django_db

# Every source a directive may name: this site, nothing, the request's nonce, one hash of an inline style, and the
# two schemes for content the page makes itself (Swagger UI's data: icons, Redoc's blob: search worker).
ALLOWED_SOURCE = re.compile(r"^(?:'self'|'none'|'nonce-[A-Za-z0-9+/=]+'|'sha256-[A-Za-z0-9+/=]+'|data:|blob:)$")
REQUIRED = {
    "default-src": ["'self'"],
    "object-src": ["'none'"],
    "base-uri": ["'self'"],
    "form-action": ["'self'"],
    "frame-ancestors": ["'none'"],
}


def policy(response: Any) -> dict[str, list[str]]:
    header = response.headers.get("Content-Security-Policy")
    assert header, "no Content-Security-Policy header"
    directives = {}
    for part in filter(None, (chunk.strip() for chunk in header.split(";"))):
        name, *sources = part.split()
        directives[name] = sources
    return directives


class _Inline(HTMLParser):
    """Collects the page's scripts and style blocks, and any attribute the policy would refuse."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.styles: list[dict[str, str | None]] = []
        self.refused_attributes: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "script":
            self.scripts.append(attributes)
        elif tag == "style":
            self.styles.append(attributes)
        self.refused_attributes += [(tag, name) for name in attributes if name == "style" or name.startswith("on")]


def assert_works_under_its_policy(response: Any) -> None:
    assert response.status_code == 200
    directives = policy(response)
    for name, sources in REQUIRED.items():
        assert directives.get(name) == sources, name
    for name, sources in directives.items():
        assert all(ALLOWED_SOURCE.match(source) for source in sources), (name, sources)
    script_sources = directives.get("script-src", [])
    nonces = {source[len("'nonce-") : -1] for source in script_sources if source.startswith("'nonce-")}

    page = _Inline()
    page.feed(response.content.decode())
    for script in page.scripts:
        src = script.get("src")
        if src is not None:
            # A path on this site.
            assert src.startswith("/"), src
            assert not src.startswith("//"), src
        else:
            assert script.get("type") == "application/json" or script.get("nonce") in nonces, script
    assert all(style.get("nonce") in nonces for style in page.styles), page.styles
    assert page.refused_attributes == []


def _admin(user: Any) -> DjangoClient:
    client = DjangoClient()
    response = client.post(reverse("admin:login"), {"username": user.email, "password": PASSWORD})
    assert response.status_code == 302
    return client


def test_the_admin_login_page_works_under_a_policy_naming_no_other_host() -> None:
    assert_works_under_its_policy(DjangoClient().get(reverse("admin:login")))


def test_the_two_factor_page_works_under_the_policy() -> None:
    user = UserFactory(is_staff=True)
    enable_two_factor(user)
    client = DjangoClient()
    assert client.post(reverse("admin:login"), {"username": user.email, "password": PASSWORD})["Location"] == reverse(
        "admin:login_two_factor"
    )

    assert_works_under_its_policy(client.get(reverse("admin:login_two_factor")))


@pytest.mark.parametrize(
    "page",
    [
        "admin:index",
        "admin:clients_client_changelist",
        "admin:clients_client_add",
        "admin:holdings_allocation_add",
        "admin:ledger_transaction_changelist",
        "admin:accounts_user_add",
    ],
)
def test_admin_pages_work_under_the_policy(page: str) -> None:
    BuyFactory()
    assert_works_under_its_policy(_admin(SuperuserFactory()).get(reverse(page)))


def test_a_client_change_page_with_its_panels_and_charts_works_under_the_policy() -> None:
    buy = BuyFactory()
    client = _admin(SuperuserFactory())

    response = client.get(reverse("admin:clients_client_change", args=[buy.client_id]))

    assert "valuation-panel" in response.content.decode()  # the panels are there, styled from a static file
    assert_works_under_its_policy(response)


def test_change_pages_of_a_user_and_a_transaction_and_the_reverse_page_work_under_the_policy() -> None:
    superuser = SuperuserFactory()
    deposit = TransactionFactory(client=ClientFactory())
    client = _admin(superuser)

    assert_works_under_its_policy(client.get(reverse("admin:accounts_user_change", args=[superuser.pk])))
    assert_works_under_its_policy(client.get(reverse("admin:ledger_transaction_change", args=[deposit.pk])))
    assert_works_under_its_policy(client.get(reverse("admin:ledger_transaction_reverse", args=[deposit.pk])))


@pytest.mark.parametrize("path", ["/api/docs/", "/api/redoc/"])
def test_the_api_docs_work_under_the_policy_their_start_up_code_carrying_the_nonce(path: str) -> None:
    response = _admin(SuperuserFactory()).get(path)

    assert_works_under_its_policy(response)
    nonce = next(s for s in policy(response)["script-src"] if s.startswith("'nonce-"))[len("'nonce-") : -1]
    assert f'<script nonce="{nonce}">' in response.content.decode()


def test_each_response_has_its_own_nonce() -> None:
    client = _admin(SuperuserFactory())

    first, second = (policy(client.get("/api/docs/"))["script-src"] for _ in range(2))

    assert first != second
