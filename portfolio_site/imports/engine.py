"""The CSV import engine: streams a file, validates every row, and hands the rows to the kind's format.

A format (an app's `importers.py`) declares its columns and writes its rows. The engine owns what is the
same for every kind: decoding (UTF-8, with or without BOM), the delimiter (`,` or `;`), header matching
(case-insensitive; unknown and missing columns are errors), line numbers, error collection, the single
transaction (all or nothing, or `skip_invalid`), dry runs, the rejects file, progress and the batch record.
"""

import contextlib
import csv
import datetime
import getpass
import hashlib
import io
import queue
import re
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import IO, Any, BinaryIO, ClassVar

from django.core.exceptions import PermissionDenied
from django.db import connection, transaction
from django.utils import timezone

from .models import ImportBatch

MAX_LISTED = 50
FLUSH_ROWS = 5000


# --- Cells a spreadsheet would run ---------------------------------------------------------------
#
# A cell whose text starts with one of these characters is run as a formula when the file is opened in a
# spreadsheet (OWASP, "CSV Injection"): every file this engine writes (exports, rejects) prefixes such a cell
# with a single quote, which spreadsheets show as text, and every file it reads takes that quote off again.
#
# The pair is exactly invertible: a quote is added when the text is any number of quotes followed by a trigger,
# and taken off only from such text, so a value that really starts with a quote (`'=x`) gains a second one on
# the way out and keeps its own on the way back. A plain number (`-100.0000`, `+5`) is no formula and is left
# as it is, so that other readers of the file still see a number; the import unescapes every cell before it
# parses it anyway, so a quoted number would read back too.
FORMULA_TRIGGERS = "=+-@\t\r"
_QUOTE_NEEDED = re.compile(f"'*[{re.escape(FORMULA_TRIGGERS)}]")
_PLAIN_NUMBER = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?", re.ASCII)


def escape_cell(value: str) -> str:
    """The text of a cell as written to a file that a spreadsheet may open."""
    if _QUOTE_NEEDED.match(value) and not _PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


def unescape_cell(value: str) -> str:
    """The value a cell written by `escape_cell` holds: `unescape_cell(escape_cell(v)) == v` for every text."""
    if value[:1] == "'" and _QUOTE_NEEDED.match(value, 1):
        return value[1:]
    return value


def _unescaped(cells: list[str]) -> list[str]:
    return [unescape_cell(cell) for cell in cells]


# --- What a format declares ----------------------------------------------------------------------


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


@dataclass(frozen=True)
class Issue:
    line: int
    column: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}, {self.column}: {self.message}"


class ImportFormat:
    """One kind of file. Subclasses declare `kind`, `columns`, `description`, `permissions` and implement the
    hooks."""

    kind: ClassVar[str]
    description: ClassVar[str]
    columns: ClassVar[tuple[Column, ...]]
    # The model permissions ("app.codename") of every write the file may make: the person importing needs all
    # of them, as they would to make the same writes through the API or the admin.
    permissions: ClassVar[tuple[str, ...]]

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
        """Only when no row was refused (or with skip_invalid): write the accepted rows, counting them."""
        raise NotImplementedError

    def close(self) -> None:
        """Always called last, also when the run stops early: release what `prepare` opened."""

    @classmethod
    def export_rows(cls) -> Iterator[dict[str, str]]:
        """Every stored record as a row of this format's columns (what `manage.py export` writes)."""
        raise NotImplementedError

    @classmethod
    def column_help(cls) -> str:
        width = max(len(column.name) for column in cls.columns)
        lines = [
            f"  {column.name.ljust(width)}  {'required' if column.required else 'optional'}  {column.help}"
            for column in cls.columns
        ]
        return textwrap.fill(f"{cls.kind}: {cls.description}", width=100) + "\n" + "\n".join(lines)


FORMATS: dict[str, type[ImportFormat]] = {}


def register(format_class: type[ImportFormat]) -> type[ImportFormat]:
    FORMATS[format_class.kind] = format_class
    return format_class


def export_csv(format_class: type[ImportFormat], out: IO[str]) -> int:
    """Writes every record of a kind to `out` as the CSV file `import` reads back; returns the row count.

    The one place exports are written, so that every kind's cells are escaped the same way."""
    writer = csv.writer(out, lineterminator="\n")
    names = [column.name for column in format_class.columns]
    writer.writerow(names)
    count = 0
    for row in format_class.export_rows():
        writer.writerow([escape_cell(row[name]) for name in names])
        count += 1
    return count


def import_permission_check(*, actor: Any, kind: str) -> None:
    """Raises PermissionDenied unless `actor` holds every model permission a file of `kind` needs.

    Every door that imports calls this before reading the file (visibility is then applied row by row)."""
    if getattr(actor, "is_superuser", False):
        return  # superusers, and operations staff at the command line (CommandLineActor)
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


# --- A run ---------------------------------------------------------------------------------------


class CommandLineActor:
    """Who acts when an import or export runs from the command line: operations staff with server access,
    who see every client. The batch records the operating-system account instead of a user."""

    pk = None
    is_active = True
    is_authenticated = True
    is_superuser = True

    def __str__(self) -> str:
        return f"command line ({getpass.getuser()})"


class _Rollback(Exception):
    pass


class _HashingReader(io.RawIOBase):
    """Passes a binary stream through while computing its SHA-256 and counting bytes."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.digest = hashlib.sha256()
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.raw.read(len(buffer))
        size = len(data)
        buffer[:size] = data
        self.digest.update(data)
        self.bytes_read += size
        return size

    def drain(self) -> None:
        """Reads what is left, so that the hash covers the whole file even when the run stopped early."""
        while self.readinto(bytearray(1 << 20)):
            pass


@dataclass
class ImportResult:
    batch: ImportBatch
    issues: list[Issue]
    issue_count: int

    @property
    def ok(self) -> bool:
        return self.batch.outcome != ImportBatch.Outcome.FAILED


@dataclass
class ImportRun:
    """The state of one run, shared by the engine and the format."""

    format_class: type[ImportFormat]
    actor: Any
    dry_run: bool = False
    skip_invalid: bool = False
    rejects: IO[str] | None = None
    on_progress: Callable[[int, int], None] | None = None
    read: int = 0
    created: int = 0
    updated: int = 0
    skipped: int = 0
    rejected: int = 0
    issues: list[Issue] = field(default_factory=list)
    issue_count: int = 0
    aborted: bool = False
    _rejects_writer: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def reject(self, line: int, column: str, message: str, row: list[str] | None = None) -> None:
        """Records a refused row: listed (the first 50), counted, and with skip_invalid written to the rejects file.

        Pipelined formats call it from two threads; the lock keeps the counts and the rejects file whole.
        """
        with self._lock:
            self._reject(line, column, message, row)

    def _reject(self, line: int, column: str, message: str, row: list[str] | None) -> None:
        self.issue_count += 1
        self.rejected += 1
        if len(self.issues) < MAX_LISTED:
            self.issues.append(Issue(line, column, message))
        if self.skip_invalid and self.rejects is not None and row is not None:
            if self._rejects_writer is None:
                self._rejects_writer = csv.writer(self.rejects)
                self._rejects_writer.writerow(["line", *[c.name for c in self.format_class.columns], "error"])
            # Rows are handed over as values (unescaped); the rejects file is opened in spreadsheets too.
            self._rejects_writer.writerow([line, *map(escape_cell, row), escape_cell(f"{column}: {message}")])

    def fatal(self, line: int, column: str, message: str) -> None:
        """A problem with the file itself (header, encoding, CSV syntax): nothing is imported."""
        self.aborted = True
        self.issue_count += 1
        if len(self.issues) < MAX_LISTED:
            self.issues.append(Issue(line, column, message))
        raise _Rollback

    @property
    def failed(self) -> bool:
        return self.aborted or (self.issue_count > 0 and not self.skip_invalid)


def _header_map(run: ImportRun, header: list[str]) -> list[int | None]:
    """For each declared column, the index of its cell in a row (None when an optional one is absent)."""
    names = [name.strip().lower() for name in header]
    declared = {column.name: column for column in run.format_class.columns}
    unknown = [name for name in names if name not in declared]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    missing = [column.name for column in run.format_class.columns if column.required and column.name not in names]
    problems = []
    if unknown:
        problems.append(f"unknown column(s): {', '.join(unknown)}")
    if missing:
        problems.append(f"missing column(s): {', '.join(missing)}")
    if duplicated:
        problems.append(f"repeated column(s): {', '.join(duplicated)}")
    if problems:
        expected = ", ".join(declared)
        run.fatal(1, "header", f"{'; '.join(problems)} (expected: {expected})")
    return [names.index(column.name) if column.name in names else None for column in run.format_class.columns]


class _NotUtf8(Exception):
    def __init__(self, line: int) -> None:
        super().__init__(line)
        self.line = line


def _decoded_lines(source: _HashingReader) -> Iterator[str]:
    """The file's physical lines as text, decoded one by one so that a bad byte is reported at its line."""
    for number, raw in enumerate(io.BufferedReader(source, buffer_size=1 << 16), start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _NotUtf8(number) from None
        yield text.removeprefix("\ufeff") if number == 1 else text


def _rows(run: ImportRun, lines: Iterator[str]) -> Iterator[tuple[int, list[str]]]:
    """(line where the record starts, cells): a quoted field may span lines."""
    first = next(lines, "")
    if not first.strip():
        run.fatal(1, "header", "the file is empty: the first line must name the columns")
    delimiter = ";" if first.count(";") > first.count(",") else ","
    reader = csv.reader(_chain(first, lines), delimiter=delimiter, strict=True)
    line = 1
    try:
        for row in reader:
            yield line, row
            line = reader.line_num + 1
    except csv.Error as error:
        run.fatal(line, "file", f"not valid CSV ({error})")


def _chain(first: str, rest: Iterator[str]) -> Iterator[str]:
    yield first
    yield from rest


def _load(run: ImportRun, fmt: ImportFormat, source: _HashingReader) -> None:
    rows = _rows(run, _decoded_lines(source))
    _, header = next(rows)
    positions = _header_map(run, header)
    fmt.prepare()
    try:
        parsed = _parsed_rows(run, rows, positions, len(header), source)
        if isinstance(fmt, PipelinedFormat):
            _load_pipelined(run, fmt, parsed, positions)
        else:
            for line, values, raw in parsed:
                try:
                    fmt.add(line, values)
                except RowError as error:
                    run.reject(line, error.column, error.message, _in_column_order(raw, positions))
        fmt.check()
        if run.failed:
            raise _Rollback
        fmt.write()
    finally:
        fmt.close()
    if run.failed or run.dry_run:
        raise _Rollback


def _parsed_rows(
    run: ImportRun,
    rows: Iterator[tuple[int, list[str]]],
    positions: list[int | None],
    width: int,
    source: _HashingReader,
) -> Iterator[tuple[int, dict[str, Any], list[str]]]:
    """(line, parsed values, raw cells as in the file) for each data row whose cells all parse."""
    cells = [
        (column.name, column.parse, column.required, position)
        for column, position in zip(run.format_class.columns, positions, strict=True)
    ]
    for line, row in rows:
        joined = "".join(row)
        if not joined.strip():
            continue  # blank line
        run.read += 1
        if run.on_progress is not None and run.read % FLUSH_ROWS == 0:
            run.on_progress(run.read, source.bytes_read)
        if len(row) != width:
            run.reject(line, "row", f"expected {width} fields, found {len(row)}", _unescaped(row))
            continue
        values: dict[str, Any] = {}
        for name, parse, required, position in cells:
            cell = row[position].strip() if position is not None else ""
            if cell[:1] == "'":  # (a cheap test first: this loop runs for every cell of a million-row file)
                cell = unescape_cell(cell)
            if "\x00" in cell:
                run.reject(
                    line, name, "contains a NUL character, which no text may hold", _in_column_order(row, positions)
                )
                break
            if not cell:
                if required:
                    run.reject(line, name, "required", _in_column_order(row, positions))
                    break
                values[name] = None
                continue
            try:
                values[name] = parse(cell)
            except ValueError as error:
                run.reject(line, name, str(error), _in_column_order(row, positions))
                break
        else:
            yield line, values, row


def _in_column_order(row: list[str], positions: list[int | None]) -> list[str]:
    return [unescape_cell(row[p]) if p is not None else "" for p in positions]


class PipelinedFormat(ImportFormat):
    """A format whose parsing overlaps its writing: rows are parsed in a second thread, and the database
    thread writes them a chunk at a time while the next chunk is parsed.

    `stage()` runs in the parsing thread and must not touch the database; `write_chunk()` runs in the
    database thread (the one holding the import's transaction), also once the run has failed, so that
    its checks can report every problem (it must not write then: check `run.failed`).
    """

    chunk_rows: ClassVar[int] = 20_000

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


_DONE = object()


def _load_pipelined(
    run: ImportRun,
    fmt: PipelinedFormat,
    parsed: Iterator[tuple[int, dict[str, Any], list[str]]],
    positions: list[int | None],
) -> None:
    chunks: queue.Queue[Any] = queue.Queue(maxsize=2)
    stop = threading.Event()

    def parse() -> None:
        try:
            chunk: list[tuple[Any, ...]] = []
            for line, values, raw in parsed:
                if stop.is_set():  # the database thread gave up: no one will read what follows
                    return
                try:
                    chunk.append(fmt.stage(line, values))
                except RowError as error:
                    run.reject(line, error.column, error.message, _in_column_order(raw, positions))
                if len(chunk) >= fmt.chunk_rows:
                    chunks.put(fmt.encode_chunk(chunk))
                    chunk = []
            if chunk:
                chunks.put(fmt.encode_chunk(chunk))
        except BaseException as error:  # handed to the database thread, which re-raises it
            chunks.put(error)
        finally:
            chunks.put(_DONE)

    parser = threading.Thread(target=parse, name="import-parser", daemon=True)
    parser.start()
    try:
        while (item := chunks.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            fmt.write_chunk(item)
    finally:
        # If the database thread stopped early (an error), the parser may be blocked on a full queue:
        # tell it to stop and empty the queue until it has.
        stop.set()
        while parser.is_alive():
            with contextlib.suppress(queue.Empty):
                chunks.get(timeout=0.1)
        parser.join()


def run_import(
    *,
    kind: str,
    stream: BinaryIO,
    file_name: str,
    actor: Any,
    dry_run: bool = False,
    skip_invalid: bool = False,
    rejects: IO[str] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> ImportResult:
    """Imports one file of one kind in one transaction and records the batch; never raises for bad data."""
    format_class = FORMATS[kind]
    run = ImportRun(format_class, actor, dry_run, skip_invalid, rejects, on_progress)
    started, clock = timezone.now(), time.perf_counter()
    source = _HashingReader(stream)
    try:
        with transaction.atomic():
            _load(run, format_class(run), source)
    except _Rollback:
        pass
    except _NotUtf8 as error:
        run.aborted = True
        run.issue_count += 1
        run.issues.append(Issue(error.line, "file", "not UTF-8 text: save the file as UTF-8"))
    source.drain()
    run.issues.sort(key=lambda issue: issue.line)
    if run.failed:
        run.created = run.updated = run.skipped = 0
        outcome = ImportBatch.Outcome.FAILED
    else:
        outcome = ImportBatch.Outcome.DRY_RUN if run.dry_run else ImportBatch.Outcome.SUCCEEDED
    user = actor if getattr(actor, "pk", None) else None
    batch = ImportBatch.objects.create(
        kind=kind,
        file_name=file_name[:255],
        sha256=source.digest.hexdigest(),
        rows_read=run.read,
        rows_created=run.created,
        rows_updated=run.updated,
        rows_skipped=run.skipped,
        rows_rejected=run.rejected,
        outcome=outcome,
        errors="\n".join(str(issue) for issue in run.issues),
        user=user,
        run_by=getattr(user, "email", "") or getpass.getuser(),
        started_at=started,
        duration=datetime.timedelta(seconds=time.perf_counter() - clock),
    )
    return ImportResult(batch, run.issues, run.issue_count)


# --- Staging tables ------------------------------------------------------------------------------


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def copy_text(value: Any) -> str:
    """One value in PostgreSQL's COPY text format."""
    if value is None:
        return "\\N"
    if isinstance(value, str):
        return value.translate(_COPY_ESCAPES)
    return str(value)


class Staging:
    """A temporary table that rows are streamed into: COPY on PostgreSQL, batched inserts elsewhere.

    `with staging:` streams (creating the table first if needed); leaving the block ends the stream, so the
    rows are in the table. The table lives until `drop()`, or until the transaction is rolled back.
    """

    def __init__(self, name: str, columns: list[tuple[str, str]]) -> None:
        self.name = name
        self.columns = columns
        self._buffer: list[tuple[Any, ...]] = []
        self._copy: Any = None
        self._stack = ExitStack()
        self._created = False
        self.postgres = connection.vendor == "postgresql"

    def create(self) -> "Staging":
        """(Re)creates the table, empty."""
        definition = ", ".join(f"{name} {sql_type}" for name, sql_type in self.columns)
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {self.name}")
            cursor.execute(f"CREATE TEMPORARY TABLE {self.name} ({definition})")
        self._created = True
        return self

    def __enter__(self) -> "Staging":
        if not self._created:
            self.create()
        if self.postgres:
            cursor = self._stack.enter_context(connection.cursor())
            names = ", ".join(name for name, _ in self.columns)
            self._copy = self._stack.enter_context(cursor.cursor.copy(f"COPY {self.name} ({names}) FROM STDIN"))
        return self

    def add(self, row: tuple[Any, ...]) -> None:
        if self._copy is not None:
            self._copy.write_row(row)
            return
        self._buffer.append(row)
        if len(self._buffer) >= FLUSH_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self._buffer:
            marks = ", ".join(["%s"] * len(self.columns))
            names = ", ".join(name for name, _ in self.columns)
            with connection.cursor() as cursor:
                cursor.executemany(f"INSERT INTO {self.name} ({names}) VALUES ({marks})", self._buffer)
            self._buffer.clear()

    def encode(self, rows: list[tuple[Any, ...]]) -> Any:
        """The rows ready for `write_encoded`: COPY text on PostgreSQL. Touches no database, so a parsing
        thread can do this work while the database thread is busy."""
        if not self.postgres:
            return rows
        return "".join("\t".join(map(copy_text, row)) + "\n" for row in rows).encode()

    def write_encoded(self, payload: Any) -> None:
        """Appends encoded rows to the (existing) table in one go."""
        if not self.postgres:
            self._buffer.extend(payload)
            self._flush()
            return
        names = ", ".join(name for name, _ in self.columns)
        # Django's own error classes (IntegrityError...) for the raw driver's, as for any other query.
        with (
            connection.wrap_database_errors,
            connection.cursor() as cursor,
            cursor.cursor.copy(f"COPY {self.name} ({names}) FROM STDIN") as copy,
        ):
            copy.write(payload)

    def close(self) -> None:
        """Ends the stream: everything added is in the table."""
        self._flush()
        self._stack.close()
        self._copy = None

    def __exit__(self, *exc: object) -> None:
        self.close()

    def drop(self) -> None:
        self.close()
        if self._created:
            with connection.cursor() as cursor:
                cursor.execute(f"DROP TABLE IF EXISTS {self.name}")
            self._created = False
