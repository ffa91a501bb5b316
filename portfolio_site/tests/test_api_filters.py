"""The lists' filter backend skips the FilterSet only when the query names none of its filters."""

from typing import Any

import pytest
from django.urls import get_resolver
from rest_framework.test import APIRequestFactory

from clients.tests.factories import ClientFactory
from ledger.tests.factories import TransactionFactory
from portfolio_site.api.filters import filter_parameters
from portfolio_site.api.pagination import PageNumberPagination


def filtersets() -> list[Any]:
    found = set()
    for pattern in get_resolver().url_patterns:
        for sub in getattr(pattern, "url_patterns", []):
            view = getattr(getattr(sub, "callback", None), "cls", None)
            if getattr(view, "filterset_class", None) is not None:
                found.add(view.filterset_class)
    assert found, "no FilterSet found behind the API's URLs"
    return sorted(found, key=lambda cls: cls.__name__)


@pytest.mark.django_db
@pytest.mark.parametrize("filterset_class", filtersets(), ids=lambda cls: cls.__name__)
def test_every_parameter_a_filterset_reads_is_known_to_the_backend(filterset_class: Any, superuser) -> None:
    request = APIRequestFactory().get("/")
    request.user = superuser
    names = filter_parameters(filterset_class)
    assert names is not None
    form = filterset_class(data={}, request=request).form
    for field_name, field in form.fields.items():
        # The widget says which of the query's names it reads: none when only unknown names are given, some of ours.
        assert field.widget.value_omitted_from_data({"page": "2", "bench": "1"}, {}, field_name)
        assert not field.widget.value_omitted_from_data(dict.fromkeys(names, "x"), {}, field_name), field_name


@pytest.mark.django_db
def test_a_query_with_only_other_parameters_lists_every_row_and_a_filter_still_applies(operations, api) -> None:
    mine, other = ClientFactory(), ClientFactory()
    TransactionFactory(client=mine)
    TransactionFactory(client=other)
    c = api(operations)
    assert c.get("/api/v1/transactions/?page_size=10&unrelated=1").json()["count"] == 2
    assert c.get(f"/api/v1/transactions/?client={mine.pk}").json()["count"] == 1
    assert c.get("/api/v1/transactions/?date_after=2030-01-01").json()["count"] == 0
    assert "client" in c.get("/api/v1/transactions/?client=999999").json()


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/api/v1/clients/", "/api/v1/transactions/", "/api/v1/transactions/?cursor="])
@pytest.mark.parametrize("size", ["null", "0", "-3", "2.5", "ten"])
def test_a_page_size_that_is_not_a_positive_whole_number_is_a_400_naming_it(operations, api, url, size) -> None:
    joiner = "&" if "?" in url else "?"
    response = api(operations).get(f"{url}{joiner}page_size={size}")
    assert response.status_code == 400
    assert "page_size" in response.json()


@pytest.mark.django_db
def test_a_page_size_over_the_most_served_is_served_at_the_most(operations, api, monkeypatch) -> None:
    monkeypatch.setattr(PageNumberPagination, "max_page_size", 2)
    ClientFactory.create_batch(3)
    page = api(operations).get("/api/v1/clients/?page_size=100000")
    assert page.status_code == 200
    assert len(page.json()["results"]) == 2
