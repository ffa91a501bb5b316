"""The client's admin page: its details, portfolios, the sections other apps add, and the "recent changes" slot the
change history fills (clients.admin.add_client_changes_panel)."""

from decimal import Decimal

import pytest
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from clients.admin import ClientAdmin
from clients.models import Client
from clients.tests.factories import ClientFactory
from holdings.tests.factories import AllocationFactory
from ledger.tests.factories import TransactionFactory

pytestmark = pytest.mark.django_db


def test_the_client_page_shows_portfolios_valuation_income_and_the_movements_inline(client, superuser) -> None:
    own = ClientFactory(base_currency="USD")
    TransactionFactory(client=own, amount=Decimal("2500.5000"))
    AllocationFactory(client=own, quantity=Decimal("12.5000000000"))
    client.force_login(superuser)

    page = client.get(reverse("admin:clients_client_change", args=[own.pk])).content.decode()

    assert "Portfolios" in page
    assert "Valuation on" in page
    assert "Income over the last 12 months" in page
    assert "Latest 20 allocations" in page
    assert "Latest 20 transactions" in page
    assert "2,500.50 USD" in page  # the transaction inline, as people read it
    assert 'value="12.5"' in page  # the allocation inline's quantity (editable here), without trailing zeros


def test_the_recent_changes_slot_renders_what_is_registered_after_the_inlines(client, superuser, monkeypatch) -> None:
    seen: list[int] = []

    def changes(request: HttpRequest, shown: Client) -> str:
        seen.append(shown.pk)
        return format_html('<div id="recent-changes">Changes of {}</div>', shown.name)

    monkeypatch.setattr(ClientAdmin, "changes_panels", [changes])
    own = ClientFactory(name="Ada <Lovelace>")
    client.force_login(superuser)

    page = client.get(reverse("admin:clients_client_change", args=[own.pk])).content.decode()

    assert seen == [own.pk]
    assert '<div id="recent-changes">Changes of Ada &lt;Lovelace&gt;</div>' in page
    assert page.index("recent-changes") > page.index("Latest 20 transactions")


def test_an_advisor_never_gets_a_recent_changes_panel_for_another_advisors_client(client, advisor, monkeypatch) -> None:
    seen: list[int] = []
    monkeypatch.setattr(ClientAdmin, "changes_panels", [lambda request, shown: seen.append(shown.pk) or ""])
    others = ClientFactory()
    client.force_login(advisor)

    response = client.get(reverse("admin:clients_client_change", args=[others.pk]))

    assert response.status_code in (302, 404)
    assert seen == []


def test_the_client_page_links_to_record_an_allocation_for_this_client(client, superuser) -> None:
    own = ClientFactory()
    client.force_login(superuser)

    page = client.get(reverse("admin:clients_client_change", args=[own.pk])).content.decode()
    add_url = reverse("admin:holdings_allocation_add") + f"?client={own.pk}"
    form = client.get(add_url).context["adminform"].form

    assert f'href="{add_url}"' in page
    assert form.initial["client"] == str(own.pk)
