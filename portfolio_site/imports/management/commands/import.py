"""manage.py import KIND FILE: load a CSV file of one kind, all or nothing, idempotently."""

import os
import sys
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.core.management.base import CommandError, CommandParser
from tqdm import tqdm

from portfolio_site.imports.formats import FORMATS, import_permission_check
from portfolio_site.imports.management.commands._columns import ColumnsHelpCommand
from portfolio_site.imports.run import CommandLineActor, run_import


class Command(ColumnsHelpCommand):
    help = (
        "Import a CSV file (UTF-8, with or without BOM; ',' or ';' delimited; header names in any case). "
        "Every row is validated first and the file is written in one transaction: one bad row and nothing is "
        "written, unless --skip-invalid. Importing the same file again changes nothing. Rows name clients by "
        "email and assets by ticker (plus exchange when the ticker is not unique)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("kind", choices=sorted(FORMATS), help="what the file holds")
        parser.add_argument("file", help="path of the CSV file, or - for standard input")
        parser.add_argument("--dry-run", action="store_true", help="validate and report, write nothing")
        parser.add_argument(
            "--skip-invalid",
            action="store_true",
            help="write the valid rows and put the invalid ones, with their reason, in the rejects file",
        )
        parser.add_argument("--rejects", help="rejects file for --skip-invalid (default: FILE.rejects.csv)")
        parser.add_argument(
            "--user",
            help="email of the staff member importing (their permissions and visibility apply)",
        )
        parser.add_argument("--quiet", action="store_true", help="no progress bar")

    def handle(self, *args: Any, **options: Any) -> None:
        actor = self._actor(options["user"])
        try:
            import_permission_check(actor=actor, kind=options["kind"])
        except PermissionDenied as error:
            raise CommandError(f"--user {options['user']}: {error}") from None
        path = options["file"]
        stdin = path == "-"
        if not stdin and not Path(path).is_file():
            raise CommandError(f"{path}: no such file")
        rejects_path = options["rejects"] or (None if stdin else f"{path}.rejects.csv")
        rejects = None
        if options["skip_invalid"]:
            if rejects_path is None:
                raise CommandError("--skip-invalid with standard input needs --rejects FILE")
            rejects = open(rejects_path, "w", newline="", encoding="utf-8")  # noqa: SIM115 (closed below)
        stream = sys.stdin.buffer if stdin else open(path, "rb")  # noqa: SIM115
        size = None if stdin else os.path.getsize(path)
        show = not options["quiet"] and sys.stderr.isatty()
        bar = tqdm(total=size, unit="B", unit_scale=True, disable=not show, file=sys.stderr, desc=options["kind"])

        def progress(rows: int, bytes_read: int) -> None:
            bar.update(bytes_read - bar.n)
            bar.set_postfix(rows=rows, refresh=False)

        try:
            result = run_import(
                kind=options["kind"],
                stream=stream,
                file_name="<stdin>" if stdin else Path(path).name,
                actor=actor,
                dry_run=options["dry_run"],
                skip_invalid=options["skip_invalid"],
                rejects=rejects,
                on_progress=progress if show else None,
            )
        finally:
            bar.close()
            if not stdin:
                stream.close()
            if rejects is not None:
                rejects.close()
        batch = result.batch
        for issue in result.issues:
            self.stderr.write(str(issue))
        if result.issue_count > len(result.issues):
            self.stderr.write(f"... and {result.issue_count - len(result.issues)} more")
        seconds = batch.duration.total_seconds() if batch.duration else 0  # (set once the run has ended)
        rate = batch.rows_read / seconds if seconds else 0
        summary = (
            f"{batch.kind} from {batch.file_name}: {batch.get_outcome_display().lower()}; read {batch.rows_read}, "
            f"created {batch.rows_created}, updated {batch.rows_updated}, skipped {batch.rows_skipped}, "
            f"rejected {batch.rows_rejected} in {seconds:.1f}s ({rate:,.0f} rows/s), batch {batch.pk}"
        )
        if rejects is not None and batch.rows_rejected:
            summary += f"; rejected rows in {rejects_path}"
        if not result.ok:
            raise CommandError(summary)
        self.stdout.write(summary)

    def _actor(self, email: str | None) -> Any:
        if email is None:
            return CommandLineActor()
        try:
            return get_user_model().objects.get_by_natural_key(email)
        except get_user_model().DoesNotExist:
            raise CommandError(f"--user {email}: no such user") from None
