"""One run of an import: its batch record, its transaction and its single write gate.

    run_import()  creates the ImportBatch (running), then, inside one transaction:
                  header -> prepare -> every row (add / stage + write_chunk) -> check -> write (if the gate is
                  open) -> close; rolls the transaction back when the run failed or is a dry run; and finally
                  records the outcome on the batch (succeeded, failed or dry run).

The batch is committed before the transaction opens, so that every row the run writes can carry its id and the
batch outlives a rollback; a batch left `running` is a run whose process died.
"""

import csv
import datetime
import getpass
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any, BinaryIO

from django.contrib.auth.models import Group, Permission
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from portfolio_site import history

from .cells import escape_cell
from .formats import FORMATS, ImportFormat
from .models import ImportBatch
from .pipeline import feed
from .reading import FileProblem, HashingReader, decoded_lines, header_positions, records

MAX_LISTED = 50


class CommandLineActor:
    """Who acts when an import or export runs from the command line: operations staff with server access, who
    see every client and hold every permission. The batch records the operating-system account instead of a user.

    It answers everything the role and visibility checks read of a user (accounts.roles, clients.models), so that
    no check depends on asking `is_superuser` first.
    """

    pk = None
    id = None
    email = ""
    is_active = True
    is_authenticated = True
    is_anonymous = False
    is_staff = True
    is_superuser = True

    @property
    def groups(self) -> QuerySet[Group]:
        """No roles: it sees every client as a superuser does, not through a group."""
        return Group.objects.none()

    @property
    def user_permissions(self) -> QuerySet[Permission]:
        return Permission.objects.none()

    def has_perm(self, perm: str, obj: Any = None) -> bool:
        return True

    def has_perms(self, perm_list: Any, obj: Any = None) -> bool:
        return True

    def has_module_perms(self, app_label: str) -> bool:
        return True

    def get_username(self) -> str:
        return getpass.getuser()

    def __str__(self) -> str:
        return f"command line ({getpass.getuser()})"


class _Rollback(Exception):
    """Leaves the run's transaction, rolling it back: the run failed, or it is a dry run."""


@dataclass(frozen=True)
class Issue:
    line: int
    column: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}, {self.column}: {self.message}"


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
    batch: ImportBatch
    dry_run: bool = False
    skip_invalid: bool = False
    rejects: IO[str] | None = None
    on_progress: Callable[[int, int], None] | None = None
    source: HashingReader | None = None
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
        self._list(line, column, message)
        self.rejected += 1
        if self.skip_invalid and self.rejects is not None and row is not None:
            if self._rejects_writer is None:
                self._rejects_writer = csv.writer(self.rejects)
                self._rejects_writer.writerow(["line", *[c.name for c in self.format_class.columns], "error"])
            # Rows are handed over as values (unescaped); the rejects file is opened in spreadsheets too.
            self._rejects_writer.writerow([line, *map(escape_cell, row), escape_cell(f"{column}: {message}")])

    def _list(self, line: int, column: str, message: str) -> None:
        self.issue_count += 1
        if len(self.issues) < MAX_LISTED:
            self.issues.append(Issue(line, column, message))

    def progress(self) -> None:
        if self.on_progress is not None and self.source is not None:
            self.on_progress(self.read, self.source.bytes_read)

    @property
    def failed(self) -> bool:
        return self.aborted or (self.issue_count > 0 and not self.skip_invalid)

    @property
    def may_write(self) -> bool:
        """The single write gate every format asks before writing: False once the run has failed (everything
        will be rolled back; the format only goes on checking, to report every problem). A dry run writes, so
        that its checks and counts are those of the real run, and is rolled back by `run_import`."""
        return not self.failed


def _load(run: ImportRun, fmt: ImportFormat, source: HashingReader) -> None:
    """The lifecycle every format follows (see formats.py), inside the run's transaction."""
    rows = records(decoded_lines(source))
    _, header = next(rows)
    positions = header_positions(run.format_class.columns, header)
    fmt.prepare()
    try:
        feed(run, fmt, rows, positions, len(header))
        fmt.check()
        if run.may_write:
            fmt.write()
    finally:
        fmt.close()
    if run.failed or run.dry_run:
        raise _Rollback


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
    user = actor if getattr(actor, "pk", None) else None
    clock = time.perf_counter()
    batch = ImportBatch.objects.create(
        kind=kind,
        file_name=file_name[:255],
        outcome=ImportBatch.Outcome.RUNNING,
        user=user,
        run_by=getattr(user, "email", "") or getpass.getuser(),
        started_at=timezone.now(),
        door=history.current_door(),
    )
    source = HashingReader(stream)
    run = ImportRun(format_class, actor, batch, dry_run, skip_invalid, rejects, on_progress, source)
    try:
        try:
            # The batch is the run's one entry in the change history (who, when, door, counts), and every row it
            # writes points at it: no history row per imported row, whether a format writes in bulk or through
            # the per-row services.
            with transaction.atomic(), history.suppressed():
                _load(run, format_class(run), source)
        except _Rollback:
            pass
        except FileProblem as problem:
            run.aborted = True
            run._list(problem.line, problem.column, problem.message)
    except BaseException:
        # An error no row explains (a bug, a lost connection): the run failed and says so, then it propagates.
        run.aborted = True
        _finish(run, batch, clock)
        raise
    source.drain()
    _finish(run, batch, clock)
    return ImportResult(batch, run.issues, run.issue_count)


def _finish(run: ImportRun, batch: ImportBatch, clock: float) -> None:
    run.issues.sort(key=lambda issue: issue.line)
    if run.failed:
        run.created = run.updated = run.skipped = 0
        batch.outcome = ImportBatch.Outcome.FAILED
    else:
        batch.outcome = ImportBatch.Outcome.DRY_RUN if run.dry_run else ImportBatch.Outcome.SUCCEEDED
    if run.source is not None:
        batch.sha256 = run.source.digest.hexdigest()
    batch.rows_read = run.read
    batch.rows_created = run.created
    batch.rows_updated = run.updated
    batch.rows_skipped = run.skipped
    batch.rows_rejected = run.rejected
    batch.errors = "\n".join(str(issue) for issue in run.issues)
    batch.duration = datetime.timedelta(seconds=time.perf_counter() - clock)
    batch.save()
