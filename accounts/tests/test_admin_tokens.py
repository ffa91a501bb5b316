"""The admin offers no view of SimpleJWT's refresh tokens: they are live credentials, not records to browse."""

from typing import Any

import pytest
from django.contrib import admin
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from accounts.tests.factories import access_token_for

pytestmark = pytest.mark.django_db
TOKEN_ADMIN_URLS = [
    "/admin/token_blacklist/",
    "/admin/token_blacklist/outstandingtoken/",
    "/admin/token_blacklist/outstandingtoken/{outstanding}/change/",
    "/admin/token_blacklist/outstandingtoken/add/",
    "/admin/token_blacklist/blacklistedtoken/",
    "/admin/token_blacklist/blacklistedtoken/{blacklisted}/change/",
    "/admin/token_blacklist/blacklistedtoken/add/",
]


def test_token_models_are_not_registered_with_the_admin() -> None:
    assert not admin.site.is_registered(OutstandingToken)
    assert not admin.site.is_registered(BlacklistedToken)


def _tokens_of(user: Any) -> dict[str, int]:
    """One outstanding refresh token of a real login session, and a blacklisted one."""
    access_token_for(user)
    outstanding = OutstandingToken.objects.filter(user=user).latest("id")
    blacklisted = BlacklistedToken.objects.create(token=outstanding)
    return {"outstanding": outstanding.pk, "blacklisted": blacklisted.pk}


def test_admin_index_offers_a_superuser_no_token_pages(client, superuser) -> None:
    _tokens_of(superuser)
    client.force_login(superuser)
    response = client.get("/admin/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "token_blacklist" not in html
    assert "Outstanding tokens" not in html
    assert "Blacklisted tokens" not in html


@pytest.mark.parametrize("url", TOKEN_ADMIN_URLS)
def test_token_admin_urls_are_not_found_even_for_a_superuser(client, superuser, url) -> None:
    pks = _tokens_of(superuser)
    client.force_login(superuser)
    assert client.get(url.format(**pks)).status_code == 404
