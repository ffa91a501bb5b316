"""The API documentation pages work on a network without internet: every asset they load comes from this site."""

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.contrib.staticfiles import finders
from django.core.management import call_command
from django.test import Client as DjangoClient
from django.test import override_settings

from accounts.tests.factories import AdvisorFactory

DOC_PAGES = ["/api/docs/", "/api/redoc/"]
PRODUCTION_STATIC_STORAGE = "whitenoise.storage.CompressedManifestStaticFilesStorage"
# Any absolute URL written anywhere in the page, inline scripts and styles included.
ABSOLUTE_URL = re.compile(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}[^\s\"'<>)]*", re.IGNORECASE)


class _AssetCollector(HTMLParser):
    """Collects every src and href the page would make the browser fetch or follow."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in {"src", "href"} and value]


def _page(path: str) -> tuple[str, list[str]]:
    client = DjangoClient()
    client.force_login(AdvisorFactory())
    response = client.get(path)
    assert response.status_code == 200, response.content[:500]
    html = response.content.decode()
    collector = _AssetCollector()
    collector.feed(html)
    return html, collector.urls


@pytest.mark.django_db
@pytest.mark.parametrize("path", DOC_PAGES)
def test_docs_page_references_no_other_host(path: str) -> None:
    html, urls = _page(path)

    assert urls, "the page loads its viewer from somewhere"
    assert all(not urlsplit(url).netloc and not urlsplit(url).scheme for url in urls), urls
    assert ABSOLUTE_URL.findall(html) == []


@pytest.mark.django_db
@pytest.mark.parametrize("path", DOC_PAGES)
def test_docs_page_assets_are_static_files_this_site_serves(path: str) -> None:
    _, urls = _page(path)
    static_urls = [url for url in urls if url.startswith(settings.STATIC_URL)]

    # The viewer's script (and for Swagger UI its stylesheet and favicon) are among them.
    assert any(url.endswith(".js") for url in static_urls), urls
    for url in static_urls:
        found: Any = finders.find(url.removeprefix(settings.STATIC_URL))
        assert found, f"{url} is not a static file of any installed app"


@pytest.mark.django_db
@pytest.mark.parametrize("path", DOC_PAGES)
def test_docs_page_assets_survive_production_collectstatic(path: str, tmp_path: Path) -> None:
    # Production's storage (base settings; the Dockerfile runs collectstatic): the manifest must hash the
    # viewer's files, and the page must then point at the hashed copies.
    production_storages = {**settings.STORAGES, "staticfiles": {"BACKEND": PRODUCTION_STATIC_STORAGE}}
    with override_settings(STATIC_ROOT=tmp_path, STORAGES=production_storages):
        call_command("collectstatic", "--noinput", verbosity=0)
        _, urls = _page(path)

    static_urls = [url for url in urls if url.startswith(settings.STATIC_URL)]
    assert static_urls
    for url in static_urls:
        name = url.removeprefix(settings.STATIC_URL)
        assert re.search(r"\.[0-9a-f]{12}\.", name), f"{url} is not a hashed name"
        assert (tmp_path / name).is_file(), f"{url} was not collected"


@pytest.mark.django_db
def test_swagger_ui_keeps_the_sites_cross_origin_opener_policy() -> None:
    """drf-spectacular's own view relaxes it to unsafe-none for an OAuth2 popup the API does not use."""
    client = DjangoClient()
    client.force_login(AdvisorFactory())
    assert client.get("/api/docs/")["Cross-Origin-Opener-Policy"] == "same-origin"
