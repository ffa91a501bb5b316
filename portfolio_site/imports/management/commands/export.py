"""manage.py export KIND [FILE]: write every record of a kind as a CSV file that `import` reads back."""

import os
import sys
from typing import Any, TextIO, cast

from django.core.management.base import CommandParser

from portfolio_site.imports.exporting import export_csv
from portfolio_site.imports.formats import FORMATS
from portfolio_site.imports.management.commands._columns import ColumnsHelpCommand


class Command(ColumnsHelpCommand):
    help = (
        "Export every record of a kind as CSV (UTF-8, comma-delimited) in the columns `import` reads, so that "
        "export then import into an empty database reproduces the data."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("kind", choices=sorted(FORMATS), help="what to export")
        parser.add_argument(
            "file", nargs="?", default="-", help="path to write, or - (the default) for standard output"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        format_class = FORMATS[options["kind"]]
        path = options["file"]
        stdout = cast(TextIO, self.stdout._out)  # the stream itself: rows carry their own line endings
        out = stdout if path == "-" else open(path, "w", newline="", encoding="utf-8")  # noqa: SIM115
        count = 0
        try:
            count = export_csv(format_class, out)
            out.flush()
        except BrokenPipeError:
            # The reader stopped early (`export … | head`): as for any Unix tool, that is not an error.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return
        finally:
            if path != "-":
                out.close()
        if path != "-":
            self.stdout.write(f"{options['kind']}: exported {count} rows to {path}")
