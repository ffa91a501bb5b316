import django_filters
from django.db.models import Q, QuerySet

from clients.filters import visible_clients, visible_portfolios

from .models import Allocation, Asset, Dividend, FxRate, Price, Split


class AssetFilterSet(django_filters.FilterSet):
    ticker = django_filters.CharFilter(lookup_expr="iexact")
    exchange = django_filters.CharFilter(lookup_expr="iexact")
    search = django_filters.CharFilter(method="filter_search", label="Search ticker, name and ISIN")

    class Meta:
        model = Asset
        fields = ["ticker", "exchange", "currency", "asset_type", "isin"]

    def filter_search(self, queryset: QuerySet[Asset], name: str, value: str) -> QuerySet[Asset]:
        return queryset.filter(Q(ticker__icontains=value) | Q(name__icontains=value) | Q(isin__icontains=value))


class PriceFilterSet(django_filters.FilterSet):
    asset = django_filters.ModelChoiceFilter(queryset=Asset.objects.all())
    date = django_filters.DateFromToRangeFilter(help_text="Price date range: date_after, date_before (inclusive).")
    search = django_filters.CharFilter(method="filter_search", label="Search the asset's ticker and name")

    class Meta:
        model = Price
        fields = ["asset", "date"]

    def filter_search(self, queryset: QuerySet[Price], name: str, value: str) -> QuerySet[Price]:
        return queryset.filter(Q(asset__ticker__icontains=value) | Q(asset__name__icontains=value))


class SplitFilterSet(django_filters.FilterSet):
    asset = django_filters.ModelChoiceFilter(queryset=Asset.objects.all())
    date = django_filters.DateFromToRangeFilter(help_text="Split date range: date_after, date_before (inclusive).")
    search = django_filters.CharFilter(method="filter_search", label="Search the asset's ticker and name")

    class Meta:
        model = Split
        fields = ["asset", "date"]

    def filter_search(self, queryset: QuerySet[Split], name: str, value: str) -> QuerySet[Split]:
        return queryset.filter(Q(asset__ticker__icontains=value) | Q(asset__name__icontains=value))


class FxRateFilterSet(django_filters.FilterSet):
    base = django_filters.CharFilter(lookup_expr="iexact", help_text="ISO 4217 code of the base currency.")
    quote = django_filters.CharFilter(lookup_expr="iexact", help_text="ISO 4217 code of the quote currency.")
    date = django_filters.DateFromToRangeFilter(help_text="Rate date range: date_after, date_before (inclusive).")
    search = django_filters.CharFilter(method="filter_search", label="Search either currency of the pair")

    class Meta:
        model = FxRate
        fields = ["base", "quote", "date"]

    def filter_search(self, queryset: QuerySet[FxRate], name: str, value: str) -> QuerySet[FxRate]:
        return queryset.filter(Q(base__iexact=value.strip()) | Q(quote__iexact=value.strip()))


class AllocationFilterSet(django_filters.FilterSet):
    client = django_filters.ModelChoiceFilter(queryset=visible_clients)
    portfolio = django_filters.ModelChoiceFilter(queryset=visible_portfolios)
    asset = django_filters.ModelChoiceFilter(queryset=Asset.objects.all())
    date = django_filters.DateFromToRangeFilter(help_text="Trade date range: date_after, date_before (inclusive).")
    search = django_filters.CharFilter(method="filter_search", label="Search asset ticker, client name and notes")

    class Meta:
        model = Allocation
        fields = ["client", "portfolio", "asset", "kind", "date"]

    def filter_search(self, queryset: QuerySet[Allocation], name: str, value: str) -> QuerySet[Allocation]:
        return queryset.filter(
            Q(asset__ticker__icontains=value) | Q(client__name__icontains=value) | Q(notes__icontains=value)
        )


class DividendFilterSet(django_filters.FilterSet):
    client = django_filters.ModelChoiceFilter(queryset=visible_clients)
    portfolio = django_filters.ModelChoiceFilter(queryset=visible_portfolios)
    asset = django_filters.ModelChoiceFilter(queryset=Asset.objects.all())
    ex_date = django_filters.DateFromToRangeFilter(help_text="Ex-date range: ex_date_after, ex_date_before.")
    pay_date = django_filters.DateFromToRangeFilter(help_text="Pay date range: pay_date_after, pay_date_before.")
    search = django_filters.CharFilter(method="filter_search", label="Search asset ticker, client name and notes")

    class Meta:
        model = Dividend
        fields = ["client", "portfolio", "asset", "currency", "ex_date", "pay_date"]

    def filter_search(self, queryset: QuerySet[Dividend], name: str, value: str) -> QuerySet[Dividend]:
        return queryset.filter(
            Q(asset__ticker__icontains=value) | Q(client__name__icontains=value) | Q(notes__icontains=value)
        )
