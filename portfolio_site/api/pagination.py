"""How the API's lists are paged.

- Page numbers (`?page=3&page_size=100`), every list's default: counted through `CountedPaginator`, the one counting
  rule the admin shares, so a page never counts a million rows; `count_exact` says whether `count` is exact.
- Keyset pages (`?cursor=`, empty for the first page), offered on the large lists: each page starts where the last
  one ended, by a row-value comparison on the list's default ordering, which the database serves from the index of
  that ordering however deep the page is; no count, and `next`/`previous` links carry an opaque signed token.
"""

from typing import Any, cast

from django.core import signing
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.paginator import Page
from django.db.models import F, Field, Model, QuerySet
from django.db.models.fields.tuple_lookups import Tuple, TupleGreaterThan, TupleLessThan
from rest_framework import pagination
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param

from portfolio_site.counting import CountedPaginator


def _page_size(request: Request, page_size: int, max_page_size: int) -> int:
    """`page_size` from the query, capped at `max_page_size`; the default when absent. Anything but a positive whole
    number is a 400 naming the parameter (DRF would quietly serve the default, a page the caller did not ask for)."""
    given = request.query_params.get("page_size")
    if given is None:
        return page_size
    try:
        return pagination._positive_int(given, strict=True, cutoff=max_page_size)
    except ValueError:
        raise ValidationError(
            {"page_size": [f"A positive whole number is expected (at most {max_page_size} are served)."]}
        ) from None


class PageNumberPagination(pagination.PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 200
    django_paginator_class = CountedPaginator

    def get_page_size(self, request: Request) -> int:
        return _page_size(request, cast(int, self.page_size), self.max_page_size)

    def _counted(self) -> tuple[Page, CountedPaginator]:
        # The page paginate_queryset made, by the paginator class above.
        assert self.page is not None
        return self.page, cast(CountedPaginator, self.page.paginator)

    def get_paginated_response(self, data: Any) -> Response:
        _, paginator = self._counted()
        return Response(
            {
                "count": paginator.count,
                "count_exact": paginator.count_exact,
                "next": self.get_next_link(),
                "previous": self.get_previous_link(),
                "results": data,
            }
        )

    def get_next_link(self) -> str | None:
        page, paginator = self._counted()
        if paginator.count_exact:
            return super().get_next_link()
        # Past an estimate or a bound, a full page may well have a next one; an empty one is the end.
        if len(page.object_list) < paginator.per_page or self.request is None:
            return None
        return replace_query_param(self.request.build_absolute_uri(), self.page_query_param, page.number + 1)

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        described = super().get_paginated_response_schema(schema)
        described["required"] = ["count", "count_exact", "next", "previous", "results"]
        described["properties"]["count"]["description"] = (
            "Rows in the list: exact when `count_exact`; otherwise the database's estimate (an unfiltered large "
            "list) or a lower bound (a filtered list with more rows than are counted)."
        )
        described["properties"]["count_exact"] = {
            "type": "boolean",
            "description": "Whether `count` is exact. When it is not, a page past it may still have rows.",
        }
        properties = described["properties"]
        described["properties"] = {
            name: properties[name] for name in ("count", "count_exact", "next", "previous", "results")
        }
        return described


INVALID_CURSOR = "Invalid cursor: not a token this list gave out (take the `next` or `previous` link as it is)."


class KeysetPagination(pagination.BasePagination):
    """Keyset pages along the view's default `ordering` (its fields all in one direction, the last one unique):
    `?cursor=` (empty) for the first page, then the `next` and `previous` links.

    The token holds a position (the ordering's values of the row a page ended or started at) and a direction,
    signed: a token we did not give out is a 400, never a query. It carries no filters and no scope: those come from
    the query string and the caller on every request, as on any page, so a position names no row to anyone."""

    cursor_query_param = "cursor"
    page_size: int = PageNumberPagination.page_size or 50
    max_page_size: int = PageNumberPagination.max_page_size
    salt = "portfolio_site.api.pagination.cursor"

    def paginate_queryset(  # type: ignore[override]  # a QuerySet only: a keyset is a WHERE clause
        self, queryset: QuerySet[Any], request: Request, view: Any = None
    ) -> list[Any]:
        self.request = request
        ordering = self.ordering_of(view, request)
        self.names = [name.lstrip("-") for name in ordering]
        size = _page_size(request, self.page_size, self.max_page_size)
        position, backwards = self.decode(
            request.query_params.get(self.cursor_query_param, ""), queryset.model, ordering
        )
        descending = ordering[0].startswith("-")
        # Walking backwards is walking the reversed ordering forwards, then turning the page round.
        walks_down = descending != backwards
        rows = queryset.order_by(*(f"-{name}" if walks_down else name for name in self.names))
        if position is not None:
            after = TupleLessThan if walks_down else TupleGreaterThan
            rows = rows.filter(after(Tuple(*(F(name) for name in self.names)), position))
        page = list(rows[: size + 1])
        more = len(page) > size
        page = page[:size]
        if backwards:
            page.reverse()
        self.rows = page
        # Where a position was given, rows lie on its other side (it came from a page there).
        self.has_next = (position is not None) if backwards else more
        self.has_previous = more if backwards else position is not None
        return page

    def get_paginated_response(self, data: Any) -> Response:
        return Response({"next": self.get_next_link(), "previous": self.get_previous_link(), "results": data})

    def get_next_link(self) -> str | None:
        return self._link(self.rows[-1], backwards=False) if self.has_next and self.rows else None

    def get_previous_link(self) -> str | None:
        return self._link(self.rows[0], backwards=True) if self.has_previous and self.rows else None

    def _link(self, row: Any, *, backwards: bool) -> str:
        values = [row[name] for name in self.names] if isinstance(row, dict) else [getattr(row, n) for n in self.names]
        token = self.encode(values, backwards=backwards)
        return replace_query_param(self.request.build_absolute_uri(), self.cursor_query_param, token)

    def encode(self, position: list[Any], *, backwards: bool = False) -> str:
        """The token of a position (the ordering's values of a row), as `next` (or, backwards, `previous`) carries
        it."""
        values = [value.isoformat() if hasattr(value, "isoformat") else value for value in position]
        return signing.dumps({"p": values, "b": backwards}, salt=self.salt, compress=False)

    def decode(self, token: str, model: type[Model], ordering: list[str]) -> tuple[list[Any] | None, bool]:
        """(position, backwards) of a token; (None, False) for the first page; a 400 on `cursor` for anything else
        than a token `encode` made for this ordering."""
        if not token:
            return None, False
        try:
            payload = signing.loads(token, salt=self.salt)
        except signing.BadSignature:
            raise ValidationError({self.cursor_query_param: [INVALID_CURSOR]}) from None
        fields = [cast(Field, model._meta.get_field(name.lstrip("-"))) for name in ordering]
        values = payload.get("p") if isinstance(payload, dict) else None
        backwards = payload.get("b") if isinstance(payload, dict) else None
        if not isinstance(values, list) or len(values) != len(fields) or not isinstance(backwards, bool):
            raise ValidationError({self.cursor_query_param: [INVALID_CURSOR]})
        try:
            position = [field.to_python(value) for field, value in zip(fields, values, strict=True)]
        except DjangoValidationError:
            raise ValidationError({self.cursor_query_param: [INVALID_CURSOR]}) from None
        if any(value is None for value in position):
            raise ValidationError({self.cursor_query_param: [INVALID_CURSOR]})
        return position, backwards

    @staticmethod
    def ordering_of(view: Any, request: Request) -> list[str]:
        """The view's default ordering, which cursor pages follow; a 400 on `ordering` when the query asks for
        another (a position is a row's values of this ordering, and its index is what serves the page)."""
        ordering = list(getattr(view, "ordering", None) or [])
        if not ordering or len({name.startswith("-") for name in ordering}) != 1:
            raise TypeError(f"{type(view).__name__}: keyset pages need a default ordering in one direction.")
        asked = request.query_params.get("ordering", "").strip()
        if asked and [name.strip() for name in asked.split(",")] != ordering:
            default = ",".join(ordering)
            raise ValidationError(
                {
                    "ordering": [
                        f"Cursor pages follow the default ordering ({default}) only: drop `ordering` (or give "
                        f"{default}), or page by number (no `cursor`)."
                    ]
                }
            )
        return ordering

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return [
            {
                "name": self.cursor_query_param,
                "required": False,
                "in": "query",
                # `?cursor=` asks for the first page: OpenAPI 3.0 refuses an empty value without this (deprecated
                # there, but the only way 3.0 says it; validators warn).
                "allowEmptyValue": True,
                "description": CURSOR_HELP,
                "schema": {"type": "string"},
            }
        ]

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        link = {"type": "string", "nullable": True, "format": "uri"}
        return {
            "type": "object",
            "description": "A cursor page (the query has `cursor`): no count.",
            "required": ["next", "previous", "results"],
            "additionalProperties": False,
            "properties": {
                "next": {**link, "description": "The next page (older rows), or null at the end."},
                "previous": {**link, "description": "The previous page (newer rows), or null at the start."},
                "results": schema,
            },
        }


CURSOR_HELP = (
    "Page by cursor instead of by number: give it empty (`?cursor=`) for the first page, then follow `next` and "
    "`previous`, whose links carry the token. A cursor page costs the same however deep it is and has no count; it "
    "follows the default ordering only (a different `ordering` is refused with 400), and takes `page_size`, the "
    "filters and `search` as page numbers do. Not together with `page`."
)


class LargeListPagination(pagination.BasePagination):
    """Page numbers by default (existing clients keep them), keyset pages when the query has `cursor`."""

    def __init__(self) -> None:
        self.numbers = PageNumberPagination()
        self.cursor = KeysetPagination()
        self.current: pagination.BasePagination = self.numbers

    def paginate_queryset(  # type: ignore[override]  # a QuerySet only, as KeysetPagination
        self, queryset: QuerySet[Any], request: Request, view: Any = None
    ) -> list[Any] | None:
        if KeysetPagination.cursor_query_param in request.query_params:
            if self.numbers.page_query_param in request.query_params:
                raise ValidationError({"page": ["Give `page` or `cursor`, not both."]})
            self.current = self.cursor
        return self.current.paginate_queryset(queryset, request, view)

    def get_paginated_response(self, data: Any) -> Response:
        return self.current.get_paginated_response(data)

    @property
    def display_page_controls(self) -> bool:  # type: ignore[override]  # the browsable API's links, numbered pages
        return bool(getattr(self.current, "display_page_controls", False))

    def to_html(self) -> str:
        return self.current.to_html()  # type: ignore[no-any-return]

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return [
            *self.numbers.get_schema_operation_parameters(view),
            *self.cursor.get_schema_operation_parameters(view),
        ]

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        numbered = self.numbers.get_paginated_response_schema(schema)
        numbered["description"] = "A numbered page (the default)."
        return {"oneOf": [numbered, self.cursor.get_paginated_response_schema(schema)]}
