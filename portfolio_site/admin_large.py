"""Changelists of tables that grow with the firm (the ledger, the allocations, dividends, prices, sessions and
security events): pages that cost the same at a thousand rows and at a million.

Django's changelist reads the whole table in five places: the page's count, the "(N total)" count, the facet
counts, the date hierarchy (`SELECT DISTINCT` of the year, month or day over every matching row) and each filter
that lists the values in use (`SELECT DISTINCT` of the column). `LargeTableAdminMixin` replaces each with what an
index answers: the count of `portfolio_site.counting`, no full count, no facets, a date hierarchy read off the
ends of the date index, and `DistinctValuesListFilter` stepping through the column's index one value at a time.
The ordering a page is read in must have an index (with its id tie-breaker) for this to hold: see each model's
Meta.indexes.
"""

import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from django import template
from django.contrib import admin
from django.contrib.admin.templatetags.admin_list import date_hierarchy, pagination
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.functional import cached_property

from portfolio_site.counting import CountedPaginator

if TYPE_CHECKING:
    from django.template.response import _TemplateForResponseT

register = template.Library()

# Distinct values a DistinctValuesListFilter lists at most: each costs one probe of the index.
MAX_DISTINCT_VALUES = 30


class LargeTableAdminMixin:
    """For a ModelAdmin whose table grows with the firm; its `date_hierarchy`, if any, must be a date or datetime
    field that an index leads (see the module's docstring)."""

    # Typed as ModelAdmin declares them, for the admins that mix this in.
    paginator: ClassVar[type] = CountedPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    change_list_template: ClassVar["_TemplateForResponseT | None"] = "admin/large_table_change_list.html"


class DistinctValuesListFilter(admin.AllValuesFieldListFilter):
    """Django's list of the values in use, found by a loose index scan (the smallest value, then the smallest
    greater than it, and so on: one index probe each) instead of a DISTINCT over every row. For a column with few
    values (currencies) that an index leads; lists at most MAX_DISTINCT_VALUES of them."""

    def __init__(self, field: Any, request: Any, params: Any, model: Any, model_admin: Any, field_path: str) -> None:
        super().__init__(field, request, params, model, model_admin, field_path)
        # The parent's choices are a lazy DISTINCT query; these are read now, probe by probe, from the same
        # (scoped) rows.
        rows = model_admin.get_queryset(request).order_by(field.name).values_list(field.name, flat=True)
        values: list[Any] = []
        current = rows.filter(**{f"{field.name}__isnull": False}).first()
        while current is not None and len(values) < MAX_DISTINCT_VALUES:
            values.append(current)
            current = rows.filter(**{f"{field.name}__gt": current}).first()
        if field.null and rows.filter(**{f"{field.name}__isnull": True}).exists():
            values.append(None)
        self.lookup_choices = values  # type: ignore[assignment]  # the template iterates it; a list does as well


class IndexedCalendar:
    """Stands in for a changelist's queryset in Django's date hierarchy, answering its two questions from the
    first and last values of the rows (two reads off the end of the field's index) instead of scanning them: the
    range (`aggregate(first=Min, last=Max)`) and the periods in it (`dates` or `datetimes(field, kind)`). Every
    year, month or day between the first and the last row is offered; one with no row in it opens an empty list.
    A DateTimeField's periods are days of the current time zone, as Django's own are."""

    def __init__(self, queryset: QuerySet[Any], field_name: str) -> None:
        self.queryset = queryset
        self.field_name = field_name

    @cached_property
    def _ends(self) -> tuple[Any, Any]:
        values = self.queryset.values_list(self.field_name, flat=True)
        return values.order_by(self.field_name).first(), values.order_by(f"-{self.field_name}").first()

    def aggregate(self, **aggregates: Any) -> dict[str, Any]:
        return dict(zip(aggregates, self._ends, strict=True))

    def dates(self, field_name: str, kind: str) -> list[datetime.date]:
        first, last = self._ends
        if first is None or last is None:
            return []
        if isinstance(first, datetime.datetime):
            first, last = timezone.localdate(first), timezone.localdate(last)
        if kind == "year":
            return [datetime.date(year, 1, 1) for year in range(first.year, last.year + 1)]
        if kind == "month":
            months = range(first.year * 12 + first.month - 1, last.year * 12 + last.month)
            return [datetime.date(m // 12, m % 12 + 1, 1) for m in months]
        return [first + datetime.timedelta(days=n) for n in range((last - first).days + 1)]

    def datetimes(self, field_name: str, kind: str) -> list[datetime.datetime]:
        return [
            timezone.make_aware(datetime.datetime.combine(day, datetime.time())) for day in self.dates(field_name, kind)
        ]


class _CalendarChangeList:
    """The changelist as Django's date hierarchy sees it: itself, but for its queryset."""

    def __init__(self, changelist: Any) -> None:
        self._changelist = changelist
        self.queryset = IndexedCalendar(changelist.queryset, changelist.date_hierarchy)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._changelist, name)


@register.inclusion_tag("admin/date_hierarchy.html")
def indexed_date_hierarchy(changelist: Any) -> dict[str, Any] | None:
    """Django's date hierarchy (same links, same template), its periods found by IndexedCalendar."""
    return date_hierarchy(_CalendarChangeList(changelist))  # type: ignore[arg-type,no-any-return]  # a stand-in


@register.inclusion_tag("admin/large_table_pagination.html")
def counted_pagination(changelist: Any) -> dict[str, Any]:
    """Django's pagination, saying "about" a count the planner estimated and "more than" a bounded one."""
    context: dict[str, Any] = pagination(changelist)
    paginator: CountedPaginator = changelist.paginator  # LargeTableAdminMixin's
    context["count_exact"] = paginator.count_exact
    context["count_estimated"] = paginator.count_estimated
    context["count_shown"] = f"{changelist.result_count:,}"
    return context
