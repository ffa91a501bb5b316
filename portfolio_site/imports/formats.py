"""What a kind of file declares: its columns, its permissions, the hooks of the one lifecycle; and the registry.

The lifecycle, the same for every kind (`run.py` drives it, inside the run's transaction):

    prepare()                 once, before the first row: look-ups, staging tables
    add(line, values)         each row whose cells parsed (PipelinedFormat: stage() + write_chunk() instead)
    check()                   once, after the last row, even when rows were refused: the checks that need
                              every row, so that one run lists every problem
    write()                   only when the run may still write (`ImportRun.may_write`)
    close()                   always, last, also when the run stops early

A hook refuses a row by raising `RowError` (or, outside `add`/`stage`, by `run.reject`). Before writing anything a
format asks `self.run.may_write`, the run's single write gate; every row it creates carries `self.run.batch`.
"""

import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from django.core.exceptions import PermissionDenied
from django.db.models import Model, QuerySet

if TYPE_CHECKING:
    from .run import ImportRun


@dataclass(frozen=True)
class Column:
    name: str
    parse: Callable[[str], Any]
    required: bool = True
    help: str = ""


class RowError(Exception):
    """A row a format refuses; `column` names the cell (or "row")."""

    def __init__(self, column: str, message: str) -> None:
        super().__init__(message)
        self.column = column
        self.message = message


class ImportFormat:
    """One kind of file. Subclasses declare `kind`, `columns`, `description`, `permissions` and implement the
    hooks of the lifecycle (see the module's docstring)."""

    kind: ClassVar[str]
    description: ClassVar[str]
    columns: ClassVar[tuple[Column, ...]]
    # The model permissions ("app.codename") of every write the file may make: the person importing needs all
    # of them, as they would to make the same writes through the API or the admin.
    permissions: ClassVar[tuple[str, ...]]
    # The model whose rows the kind exports, one line each; the admin offers its export on this model's list.
    model: ClassVar[type[Model]]
    export_chunk_rows: ClassVar[int] = 5000

    def __init__(self, run: "ImportRun") -> None:
        self.run = run

    def prepare(self) -> None:
        """Before the first row: load look-ups, create staging tables."""

    def add(self, line: int, values: dict[str, Any]) -> None:
        """One row whose cells parsed; raise RowError to refuse it."""
        raise NotImplementedError

    def check(self) -> None:
        """After the last row, even if some were refused: the checks that need every row (report through
        `self.run.reject`), so that one run lists every problem."""

    def write(self) -> None:
        """Only when the run may write (no row refused, or skip_invalid): write the accepted rows, counting them."""
        raise NotImplementedError

    def close(self) -> None:
        """Always called last, also when the run stops early: release what `prepare` opened."""

    @classmethod
    def exported(cls, rows: QuerySet[Any]) -> QuerySet[Any]:
        """The rows of `rows` (a queryset of `model`) that this kind writes, in the file's order, with what
        `export_row` reads joined. Ordering here, not by the caller, keeps a file importable (movements by date)."""
        raise NotImplementedError

    @classmethod
    def export_row(cls, obj: Any) -> dict[str, str]:
        """One stored record as a row of this format's columns, unescaped (`exporting.py` escapes every cell)."""
        raise NotImplementedError

    @classmethod
    def export_rows(cls, rows: QuerySet[Any] | None = None) -> Iterator[dict[str, str]]:
        """Every stored record, or those of `rows` (the admin's scoped, filtered or selected list), as rows of
        this format's columns: `manage.py export` and the admin's export both read them from here."""
        selected = cls.model._default_manager.all() if rows is None else rows
        for obj in cls.exported(selected).iterator(chunk_size=cls.export_chunk_rows):
            yield cls.export_row(obj)

    @classmethod
    def column_help(cls) -> str:
        width = max(len(column.name) for column in cls.columns)
        lines = [
            f"  {column.name.ljust(width)}  {'required' if column.required else 'optional'}  {column.help}"
            for column in cls.columns
        ]
        return textwrap.fill(f"{cls.kind}: {cls.description}", width=100) + "\n" + "\n".join(lines)


class PipelinedFormat(ImportFormat):
    """A format whose parsing overlaps its writing: rows are parsed in a second thread, and the database
    thread writes them a chunk at a time while the next chunk is parsed (see pipeline.py).

    `stage()` runs in the parsing thread and must not touch the database; `write_chunk()` runs in the
    database thread (the one holding the import's transaction), also once the run has failed, so that
    its checks can report every problem (it must not write then: ask `run.may_write`).
    """

    # Rows a chunk holds. Up to four chunks are in memory at once (one being parsed, two queued, one being
    # written, with the database driver's buffer of it): at 20,000 rows a million-row transactions import peaked
    # at 207 MB, at 10,000 at 175 MB, at the same speed (docs/benchmarks.md).
    chunk_rows: ClassVar[int] = 10_000
    # If set, the first chunk's size, each next one twice the last up to `chunk_rows`: the database thread starts
    # writing once a few rows are parsed instead of idling while a whole first chunk is.
    first_chunk_rows: ClassVar[int | None] = None

    def stage(self, line: int, values: dict[str, Any]) -> tuple[Any, ...]:
        """The row as the tuple `write_chunk` takes; raise RowError to refuse it."""
        raise NotImplementedError

    def encode_chunk(self, rows: list[tuple[Any, ...]]) -> Any:
        """Runs in the parsing thread on each full chunk; what it returns is handed to `write_chunk`."""
        return rows

    def write_chunk(self, chunk: Any) -> None:
        raise NotImplementedError

    def add(self, line: int, values: dict[str, Any]) -> None:  # pragma: no cover - pipelined formats stage
        raise NotImplementedError


FORMATS: dict[str, type[ImportFormat]] = {}


def register(format_class: type[ImportFormat]) -> type[ImportFormat]:
    FORMATS[format_class.kind] = format_class
    return format_class


def format_for_model(model: type[Model]) -> type[ImportFormat] | None:
    """The kind whose rows are `model`'s, if any (at most one: a kind names the model it exports)."""
    return next((format_class for format_class in FORMATS.values() if format_class.model is model), None)


def import_permission_check(*, actor: Any, kind: str) -> None:
    """Raises PermissionDenied unless `actor` holds every model permission a file of `kind` needs.

    Every door that imports calls this before reading the file (visibility is then applied row by row). Every
    actor answers `has_perm` (superusers and CommandLineActor with True), so there is no shortcut to keep in step.
    """
    needed = FORMATS[kind].permissions
    missing = [name for name in needed if not actor.has_perm(name)]
    if missing:
        raise PermissionDenied(
            f"Importing {kind} needs the permission(s) {', '.join(needed)}; missing: {', '.join(missing)}."
        )


def columns_reference() -> str:
    """The columns of every kind, for the commands' --help."""
    kinds = "\n\n".join(FORMATS[kind].column_help() for kind in sorted(FORMATS))
    return f"Columns, per kind:\n\n{kinds}\n\nAn example file of each kind is in docs/examples/."
