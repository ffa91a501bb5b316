import django_filters
from django.db.models import Q, QuerySet

from clients.filters import visible_clients, visible_portfolios

from .models import Transaction


class TransactionFilterSet(django_filters.FilterSet):
    client = django_filters.ModelChoiceFilter(queryset=visible_clients)
    portfolio = django_filters.ModelChoiceFilter(queryset=visible_portfolios)
    date = django_filters.DateFromToRangeFilter(help_text="Value date range: date_after, date_before (inclusive).")
    is_reversal = django_filters.BooleanFilter(field_name="reverses", lookup_expr="isnull", exclude=True)
    search = django_filters.CharFilter(method="filter_search", label="Search reference and notes")

    class Meta:
        model = Transaction
        fields = ["client", "portfolio", "kind", "currency", "date", "reference", "is_reversal"]

    def filter_search(self, queryset: QuerySet[Transaction], name: str, value: str) -> QuerySet[Transaction]:
        return queryset.filter(Q(reference__icontains=value) | Q(notes__icontains=value))
