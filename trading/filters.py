from typing import Any

import django_filters
from django import forms
from django.db.models import Q, QuerySet

from clients.filters import visible_clients, visible_portfolios
from holdings.models import Asset

from .models import BrokerAccount, BrokerConnection, Fill, ModelAssignment, ModelPortfolio, Order, RebalanceProposal


def visible_orders(request: Any) -> QuerySet[Order]:
    """The orders a filter may name: only those the caller sees, so that a filter cannot probe for others."""
    if request is None:
        return Order.objects.none()
    return Order.objects.visible_to(request.user)


class RepeatedQueryParameter(forms.SelectMultiple):
    """A multiple choice read from a repeated query parameter (`status=a&status=b`). Omitted when the query does not
    name it: an HTML form's multi-select is never "omitted" (none selected sends nothing), a query's parameter is, and
    the lists' filter backend skips a FilterSet none of whose parameters a query names."""

    def value_omitted_from_data(self, data: Any, files: Any, name: str) -> bool:
        return name not in data


class OrderFilterSet(django_filters.FilterSet):
    client = django_filters.ModelChoiceFilter(queryset=visible_clients)
    portfolio = django_filters.ModelChoiceFilter(queryset=visible_portfolios)
    asset = django_filters.ModelChoiceFilter(queryset=Asset.objects.all())
    # No DISTINCT: a column of the order itself, no join can repeat a row (and a DISTINCT query's bounded count,
    # portfolio_site.counting.count_rows, counts one row).
    status = django_filters.MultipleChoiceFilter(
        choices=Order.Status.choices,
        distinct=False,
        widget=RepeatedQueryParameter,
        help_text="One or more statuses: `status=submitted&status=partially_filled`.",
    )
    side = django_filters.ChoiceFilter(choices=Order.Side.choices)
    order_type = django_filters.ChoiceFilter(choices=Order.Type.choices)
    connection = django_filters.ModelChoiceFilter(
        queryset=BrokerConnection.objects.all(), help_text="The broker connection's id."
    )
    created = django_filters.DateFromToRangeFilter(
        field_name="created_at", help_text="Creation date range: created_after, created_before (inclusive)."
    )
    search = django_filters.CharFilter(method="filter_search", label="Our client order id or the broker's order id")

    class Meta:
        model = Order
        fields = ["client", "portfolio", "asset", "status", "side", "order_type", "connection", "created"]

    def filter_search(self, queryset: QuerySet[Order], name: str, value: str) -> QuerySet[Order]:
        # Exact, each served by its unique index: ids are looked up, not browsed.
        value = value.strip()
        return queryset.filter(Q(client_order_id=value) | Q(broker_order_id=value))


class FillFilterSet(django_filters.FilterSet):
    order = django_filters.ModelChoiceFilter(queryset=visible_orders)
    client = django_filters.ModelChoiceFilter(queryset=visible_clients)
    portfolio = django_filters.ModelChoiceFilter(field_name="order__portfolio", queryset=visible_portfolios)
    asset = django_filters.ModelChoiceFilter(field_name="order__asset", queryset=Asset.objects.all())
    exceeded_hold = django_filters.BooleanFilter(
        help_text="true: the fills that cost more than their order held and the portfolio had (for staff to resolve)."
    )
    executed = django_filters.DateFromToRangeFilter(
        field_name="executed_at", help_text="Execution date range: executed_after, executed_before (inclusive)."
    )
    search = django_filters.CharFilter(
        method="filter_search", label="The broker's fill id, our client order id or the broker's order id"
    )

    class Meta:
        model = Fill
        fields = ["order", "client", "portfolio", "asset", "exceeded_hold", "executed"]

    def filter_search(self, queryset: QuerySet[Fill], name: str, value: str) -> QuerySet[Fill]:
        value = value.strip()
        return queryset.filter(
            Q(broker_fill_id=value) | Q(order__client_order_id=value) | Q(order__broker_order_id=value)
        )


class BrokerAccountFilterSet(django_filters.FilterSet):
    client = django_filters.ModelChoiceFilter(queryset=visible_clients)
    portfolio = django_filters.ModelChoiceFilter(queryset=visible_portfolios)
    connection = django_filters.ModelChoiceFilter(queryset=BrokerConnection.objects.all())

    class Meta:
        model = BrokerAccount
        fields = ["client", "portfolio", "connection"]


class ModelAssignmentFilterSet(django_filters.FilterSet):
    client = django_filters.ModelChoiceFilter(queryset=visible_clients)
    portfolio = django_filters.ModelChoiceFilter(queryset=visible_portfolios)
    model = django_filters.ModelChoiceFilter(queryset=ModelPortfolio.objects.all(), help_text="The model's id.")

    class Meta:
        model = ModelAssignment
        fields = ["client", "portfolio", "model"]


class RebalanceProposalFilterSet(django_filters.FilterSet):
    client = django_filters.ModelChoiceFilter(queryset=visible_clients)
    portfolio = django_filters.ModelChoiceFilter(queryset=visible_portfolios)
    model = django_filters.ModelChoiceFilter(queryset=ModelPortfolio.objects.all(), help_text="The model's id.")
    accepted = django_filters.BooleanFilter(
        field_name="accepted_at", lookup_expr="isnull", exclude=True, help_text="true: accepted; false: not yet."
    )
    created = django_filters.DateFromToRangeFilter(
        field_name="created_at", help_text="Creation date range: created_after, created_before (inclusive)."
    )

    class Meta:
        model = RebalanceProposal
        fields = ["client", "portfolio", "model", "accepted", "created"]
