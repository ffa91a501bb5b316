"""The dashboard on the admin's index page, contributed by this app (the admin site, in accounts, imports no upper
app): the figures of `holdings.dashboard` for the user, as people read them (portfolio_site.display), each linking
to the changelist filtered to the rows behind it. A section shows only to those who may view its rows."""

import datetime
from typing import Any

from django.http import HttpRequest
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.http import urlencode

from portfolio_site.display import money, number

from .dashboard import Dashboard, dashboard

# Held assets named in one link to the asset list (by id); beyond this the link lists the first ones only.
MAX_LINKED_IDS = 200


def _url(name: str, **query: Any) -> str:
    url = reverse(f"admin:{name}")
    return f"{url}?{urlencode(query)}" if query else url


def dashboard_panel(request: HttpRequest) -> str:
    user = request.user
    if not user.has_perm("clients.view_client"):
        return ""  # someone who sees no client has no dashboard (the admin index still lists their apps)
    figures = dashboard(user=user)
    return render_to_string("holdings/admin/dashboard.html", _context(figures, user))


def _context(figures: Dashboard, user: Any) -> dict[str, Any]:
    currency = figures.currency
    aum = figures.aum
    may = user.has_perm
    context: dict[str, Any] = {
        "d": figures,
        "aum_total": money(aum.total, currency),
        "aum_by_currency": [(each.currency, money(each.amount, each.currency)) for each in aum.by_currency],
        "portfolios_url": _url("clients_portfolio_changelist", status="open"),
        "refresh_jobs_url": _url("jobs_jobrun_changelist", task="holdings.daily_values_refresh"),
        "active_url": _url("clients_client_changelist", is_active__exact=1),
        "inactive_url": _url("clients_client_changelist", is_active__exact=0),
        "may_view_transactions": may("ledger.view_transaction"),
        "may_view_allocations": may("holdings.view_allocation"),
        "may_view_assets": may("holdings.view_asset"),
        "may_view_jobs": may("jobs.view_jobrun"),
    }
    context["flows"] = [
        {
            "label": f"{each.kind.capitalize()}s {each.period}",
            "count": each.count,
            "total": money(each.total, currency),
            "by_currency": [money(c.amount, c.currency) for c in each.by_currency],
            "url": _flows_url(each.kind, each.start, each.end),
        }
        for each in figures.flows
    ]
    context["largest"] = [
        {
            "position": each,
            "units": number(each.units),
            "close": number(each.close),
            "market_value": money(each.market_value, each.currency),
            "reported": money(each.reported, currency),
            "url": _url("holdings_allocation_changelist", portfolio=each.portfolio_id, asset=each.asset_id),
        }
        for each in figures.largest
    ]
    context["unpriced_url"] = _assets_url(figures.unpriced_ids)
    context["stale_url"] = _assets_url(figures.stale_ids)
    return context


def _flows_url(kind: str, start: datetime.date, end: datetime.date) -> str:
    return _url(
        "ledger_transaction_changelist", kind__exact=kind, date__gte=start.isoformat(), date__lte=end.isoformat()
    )


def _assets_url(ids: list[int]) -> str:
    if not ids:
        return ""
    return _url("holdings_asset_changelist", id__in=",".join(map(str, ids[:MAX_LINKED_IDS])))
