from typing import Any

import django_filters
from django.db.models import Q, QuerySet

from . import services
from .models import Client, Portfolio


def visible_clients(request: Any) -> QuerySet[Client]:
    """The clients a filter may name: only those the caller sees, so a filter cannot probe for others."""
    if request is None:
        return Client.objects.none()
    return Client.objects.visible_to(request.user)


def visible_portfolios(request: Any) -> QuerySet[Portfolio]:
    """The portfolios a filter or a write may name: those of the clients the caller sees, so that an id of any
    other portfolio is refused exactly like an unknown one."""
    if request is None:
        return Portfolio.objects.none()
    return Portfolio.objects.visible_to(request.user)


def nameable_staff(request: Any) -> QuerySet[Any]:
    """The users a filter may name (for an advisor, only themselves), so that a filter cannot probe for staff:
    any other id is refused exactly like an unknown one, and the browsable API's filter form lists no one else."""
    return services.staff_nameable_by(getattr(request, "user", None))


class ClientFilterSet(django_filters.FilterSet):
    advisor = django_filters.ModelChoiceFilter(queryset=nameable_staff)
    search = django_filters.CharFilter(method="filter_search", label="Search name, email and phone")

    class Meta:
        model = Client
        fields = ["advisor", "is_active", "base_currency"]

    def filter_search(self, queryset: QuerySet[Client], name: str, value: str) -> QuerySet[Client]:
        return queryset.filter(Q(name__icontains=value) | Q(email__icontains=value) | Q(phone__icontains=value))


class PortfolioFilterSet(django_filters.FilterSet):
    client = django_filters.ModelChoiceFilter(queryset=visible_clients)
    custodian = django_filters.CharFilter(lookup_expr="iexact")
    is_open = django_filters.BooleanFilter(
        field_name="closed_on", lookup_expr="isnull", label="Open (true) or closed (false)"
    )
    search = django_filters.CharFilter(method="filter_search", label="Search name, custodian and account number")

    class Meta:
        model = Portfolio
        fields = ["client", "kind", "custodian", "base_currency", "is_open"]

    def filter_search(self, queryset: QuerySet[Portfolio], name: str, value: str) -> QuerySet[Portfolio]:
        return queryset.filter(
            Q(name__icontains=value) | Q(custodian__icontains=value) | Q(account_number__icontains=value)
        )
