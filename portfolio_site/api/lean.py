"""Read-only serializers turned into plain functions, for reports of hundreds of rows.

A DRF serializer's `.data` walks every field of every row through generic machinery (the field's `get_attribute`
with its error wrapping, `context` found again by climbing to the root for each field): 500 valued positions cost
more than the database's work for them. `represent(serializer_class, instance, context)` gives the same data
(same keys in the same order, same strings), field by field through each field's own `to_representation`, and
only the walking is done once per serializer class instead of once per value. The serializer stays what the
OpenAPI schema describes; this is only a faster way to run it, checked against `.data` by the tests of each user.

`LeanListSerializer`, a serializer's `Meta.list_serializer_class`, runs every list of its rows (an API list page)
this way, compiled once per list; `columns()` names the `values()` that give such a list as plain rows, which
represent as the objects would without building a model instance per row.

A primary-key related field reads the key from the row's own column, as DRF's does (`serializable_value`), never
the related row.

A field may offer `lean_represent(context)`: a function of the row giving what the field shows for it (its
`to_representation` of its `get_attribute`, None for a null), for fields that compute, such as rounding per
currency, in one step. It runs under a half-even decimal context (DRF's own rounding default), which the compiled
functions set, so that a figure may be rounded and written by one `format()`. Other fields read their `source`
directly and convert through their own method.
"""

import datetime
import decimal
import functools
from collections.abc import Callable, Mapping
from typing import Any, cast

from django.db.models.manager import BaseManager
from django.utils import timezone
from rest_framework import ISO_8601, serializers
from rest_framework.fields import Field, get_attribute
from rest_framework.settings import api_settings

Represent = Callable[[Any], Any]


def represent(serializer_class: type[serializers.Serializer], instance: Any, context: dict[str, Any]) -> dict:
    """`serializer_class(instance, context=context).data`, as a plain dict, without DRF's per-value overhead."""
    with decimal.localcontext(rounding=decimal.ROUND_HALF_EVEN):
        return _compile(serializer_class(context=context), context)(instance)


class LeanListSerializer(serializers.ListSerializer):
    """A list serializer whose output is `represent`'s for each row: the child compiled once for the whole list."""

    def to_representation(self, data: Any) -> list[dict]:
        rows = data.all() if isinstance(data, BaseManager) else data
        run = _list_representer(cast(serializers.Serializer, self.child), dict(self.context))
        with decimal.localcontext(rounding=decimal.ROUND_HALF_EVEN):
            return [run(row) for row in rows]


# Compiled representations of serializers whose output depends on their class alone, per time zone (the one thing of
# the request they read: DateTimeField's current zone). Building a serializer's fields and compiling them costs
# 0.4 ms, a tenth of a 100-row page.
_compiled: dict[tuple[type, str], Represent] = {}


def _list_representer(child: serializers.Serializer, context: dict[str, Any]) -> Represent:
    kind = type(child)
    if not _context_free(kind):
        return _compile(child, context)
    key = (kind, timezone.get_current_timezone_name())
    run = _compiled.get(key)
    if run is None:
        run = _compiled[key] = _compile(child, context)
    return run


@functools.cache
def _context_free(kind: type[serializers.Serializer]) -> bool:
    """Whether the serializer's fields, and so its compiled representation, are the same for every request: the
    fields are DRF's own way of making them (no `__init__`, `get_fields` or `fields` of the serializer's), none
    reads the context (`lean_represent`), none is a nested serializer."""
    if kind.__init__ is not serializers.BaseSerializer.__init__ or kind.fields is not serializers.Serializer.fields:
        return False
    if kind.get_fields not in (serializers.Serializer.get_fields, serializers.ModelSerializer.get_fields):
        return False
    return not any(
        hasattr(field, "lean_represent") or isinstance(field, serializers.BaseSerializer)
        for field in kind().fields.values()
    )


def _compile(serializer: serializers.Serializer, context: dict[str, Any]) -> Represent:
    # Write-only fields never appear in output; none of these read-only reports has one, and a compiled function
    # must not show one by mistake.
    if any(field.write_only for field in serializer.fields.values()):
        raise TypeError(f"{type(serializer).__name__}: write-only fields are not supported.")
    fields = serializer.fields.items()
    # (name, getter, converter), or (name, the field's own function of the row, None).
    steps: list[tuple[str, Represent, Represent | None]] = [
        (name, field.lean_represent(context), None)
        if hasattr(field, "lean_represent")
        else (name, _getter(field, context), _converter(field, context))
        for name, field in fields
    ]
    # A plain row (a dict from `values()`, see `columns()`) is read by key, without asking each getter what it is.
    keys = [None if hasattr(field, "lean_represent") else "__".join(field.source_attrs) or None for _, field in fields]
    plain: list[tuple[str, str, Represent]] | None = None
    if None not in keys:
        pairs = zip(steps, keys, strict=True)
        plain = [(name, cast(str, key), cast(Represent, convert)) for (name, _, convert), key in pairs]

    def run(instance: Any) -> dict:
        out = {}
        if plain is not None and type(instance) is dict:
            for name, key, convert in plain:
                value = instance[key] if key in instance else _nested(instance, key)
                out[name] = None if value is None else convert(value)
            return out
        for name, get, convert_or_none in steps:
            value = get(instance)
            out[name] = value if convert_or_none is None or value is None else convert_or_none(value)
        return out

    return run


@functools.cache
def columns(serializer_class: type[serializers.Serializer]) -> tuple[str, ...] | None:
    """The `values()` names that give a row of everything the serializer shows (`asset__currency` for a source
    `asset.currency`, the key itself for a related field), or None when a field needs the object (a "*" source, a
    computing `lean_represent`, a nested or many-valued field). Such plain rows represent exactly as the objects would:
    same values, same converters, without building a model instance per row. Per class: fields that change with the
    context would need the object anyway."""
    names = []
    for field in serializer_class().fields.values():
        if field.write_only:
            continue
        nested = isinstance(field, serializers.BaseSerializer | serializers.ManyRelatedField | serializers.ListField)
        if nested or hasattr(field, "lean_represent") or not field.source_attrs:
            return None
        names.append("__".join(field.source_attrs))
    return tuple(names)


def _getter(field: Field, context: dict[str, Any]) -> Represent:
    attrs = field.source_attrs
    if not attrs:  # the "*" source: the whole object
        return field.get_attribute
    flat = "__".join(attrs)
    from_object: Represent
    if isinstance(field, serializers.PrimaryKeyRelatedField) and field.use_pk_only_optimization() and len(attrs) == 1:
        from_object = _key_getter(attrs[0])
    elif len(attrs) != 1:  # dotted sources: DRF's own lookup
        from_object = field.get_attribute
    else:
        from_object = _attribute_getter(attrs)
    mapping: dict[type, bool] = {}  # isinstance(x, Mapping) is an ABC check: asked once per row type

    def get(instance: Any) -> Any:
        kind = type(instance)
        is_mapping = mapping.get(kind)
        if is_mapping is None:
            is_mapping = mapping[kind] = isinstance(instance, Mapping)
        if not is_mapping:
            return from_object(instance)
        if len(attrs) == 1 or flat in instance:
            # A plain row (`columns()`'s) holds a dotted source under its `values()` name, a foreign key's id
            # under the field's own name.
            return instance[flat]
        return field.get_attribute(instance)  # nested mappings

    return get


def _nested(row: dict, key: str) -> Any:
    # A dotted source given as nested mappings rather than a `values()` name: DRF's lookup.
    return get_attribute(row, key.split("__"))


def _attribute_getter(attrs: list[str]) -> Represent:
    (attr,) = attrs

    def get(instance: Any) -> Any:
        value = getattr(instance, attr)
        return get_attribute(instance, attrs) if callable(value) else value

    return get


def _key_getter(attr: str) -> Represent:
    # The foreign key's own column (`portfolio_id` for `portfolio`), found once per model: DRF's
    # `serializable_value` without its per-value field lookup.
    attnames: dict[type, str] = {}

    def get(instance: Any) -> Any:
        kind = type(instance)
        column = attnames.get(kind)
        if column is None:
            column = attnames[kind] = instance._meta.get_field(attr).attname
        return getattr(instance, column)

    return get


def _converter(field: Field, context: dict[str, Any]) -> Represent:
    if isinstance(field, serializers.ListSerializer):
        if not isinstance(field.child, serializers.Serializer):
            raise TypeError(f"{field!r}: a list of serializers is expected.")
        child = _compile(field.child, context)
        return lambda items: [child(item) for item in items]
    if isinstance(field, serializers.Serializer):
        return _compile(field, context)
    if isinstance(field, serializers.ListField):
        convert = _converter(field.child, context)
        return lambda items: [None if item is None else convert(item) for item in items]
    if isinstance(field, serializers.PrimaryKeyRelatedField) and field.use_pk_only_optimization():
        # What its to_representation does with the PKOnlyObject its get_attribute would have made.
        pk_field = field.pk_field
        return (lambda key: key) if pk_field is None else pk_field.to_representation
    if _unchanged(field, serializers.DecimalField, "to_representation", "quantize"):
        return _decimal_converter(cast(serializers.DecimalField, field))
    if _unchanged(field, serializers.DateTimeField, "to_representation", "enforce_timezone", "default_timezone"):
        return _datetime_converter(cast(serializers.DateTimeField, field))
    if type(field) is serializers.IntegerField:
        convert = field.to_representation
        return lambda value: value if type(value) is int else convert(value)
    if type(field) is serializers.CharField:
        convert = field.to_representation
        return lambda value: value if type(value) is str else convert(value)
    if type(field) is serializers.BooleanField:
        # A bool is its own representation (DRF's looks it up among the words for true and false first).
        convert = field.to_representation
        return lambda value: value if value is True or value is False else convert(value)
    return field.to_representation


def _unchanged(field: Field, base: type[Field], *methods: str) -> bool:
    """Whether `field` is a `base` whose methods named are `base`'s own (a subclass may change its output)."""
    return isinstance(field, base) and all(getattr(type(field), name) is getattr(base, name) for name in methods)


def _decimal_converter(field: serializers.DecimalField) -> Represent:
    # DecimalField.to_representation with what it works out for every value worked out once: the exponent and the
    # context of its quantize, and its output options.
    convert = field.to_representation
    coerce = getattr(field, "coerce_to_string", api_settings.COERCE_DECIMAL_TO_STRING)
    if field.decimal_places is None or field.normalize_output or field.localize or not coerce:
        return convert
    exponent = decimal.Decimal(".1") ** field.decimal_places
    rounding = field.rounding
    context = decimal.getcontext().copy()
    if field.max_digits is not None:
        context.prec = field.max_digits

    def represent_decimal(value: Any) -> Any:
        if type(value) is not decimal.Decimal:
            return convert(value)
        return f"{value.quantize(exponent, rounding=rounding, context=context):f}"

    return represent_decimal


def _datetime_converter(field: serializers.DateTimeField) -> Represent:
    # DateTimeField.to_representation for ISO 8601 with the time zone looked up once (the request's current one, as
    # DRF looks it up for every value); naive or odd values take DRF's own path.
    convert = field.to_representation
    output_format = getattr(field, "format", api_settings.DATETIME_FORMAT)
    zone = field.timezone if hasattr(field, "timezone") else field.default_timezone()
    if output_format is None or output_format.lower() != ISO_8601 or zone is None:
        return convert

    def represent_datetime(value: Any) -> Any:
        if type(value) is not datetime.datetime or value.tzinfo is None:
            return convert(value)
        text = value.astimezone(zone).isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text

    return represent_datetime
