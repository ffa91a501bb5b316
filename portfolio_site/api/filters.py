"""The lists' filter backend: django-filter's, which builds no filter form for a query that names no filter."""

import functools
from typing import Any

from django.db.models import QuerySet
from django.forms import MultiWidget
from django_filters import FilterSet
from django_filters.rest_framework import DjangoFilterBackend
from django_filters.widgets import SuffixedMultiWidget
from rest_framework.request import Request


@functools.cache
def filter_parameters(filterset_class: type[FilterSet]) -> frozenset[str] | None:
    """The query parameters a FilterSet reads (`date_after` and `date_before` for a date range `date`), or None
    when it must run on every query (a required filter, which refuses a query without it)."""
    names: set[str] = set()
    for name, declared in filterset_class.base_filters.items():
        if declared.extra.get("required"):
            return None
        # From the field's class, not `declared.field`: a filter of visible rows needs a request to build its field.
        widget = declared.extra.get("widget") or declared.field_class.widget
        widget = widget() if isinstance(widget, type) else widget
        if isinstance(widget, SuffixedMultiWidget):
            names.update(widget.suffixed(name, suffix) for suffix in widget.suffixes)
        elif isinstance(widget, MultiWidget):
            names.update(f"{name}{suffix}" for suffix in widget.widgets_names)  # type: ignore[attr-defined]
        else:
            names.add(name)
    return frozenset(names)


class FilterBackend(DjangoFilterBackend):
    """DjangoFilterBackend, less its cost where it changes nothing: building the FilterSet's form (a deep copy of
    every filter, a form class made anew) costs a list page as much as reading its rows, and a query naming none of
    the filters leaves every one of them inactive, so the rows are the queryset's own."""

    def filter_queryset(self, request: Request, queryset: QuerySet[Any], view: Any) -> QuerySet[Any]:
        filterset_class = self.get_filterset_class(view, queryset)
        if filterset_class is not None:
            reads = filter_parameters(filterset_class)
            if reads is not None and reads.isdisjoint(request.query_params):
                return queryset
        return super().filter_queryset(request, queryset, view)  # type: ignore[no-any-return]
