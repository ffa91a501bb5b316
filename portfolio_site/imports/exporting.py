"""The one place exports are written, so that every kind's cells are escaped the same way, whichever door asks
(`manage.py export` writes a file, the admin streams a response)."""

import csv
from collections.abc import Iterator
from typing import IO, Any

from django.db.models import QuerySet

from .cells import escape_cell
from .formats import ImportFormat


class _Line:
    """A file-like object whose `write` returns what it is given: the csv writer then hands back each line."""

    def write(self, value: str) -> str:
        return value


def csv_lines(format_class: type[ImportFormat], rows: QuerySet[Any] | None = None) -> Iterator[str]:
    """The header, then one escaped line per record of a kind (every record, or those of `rows`): the CSV file
    `import` reads back, produced a line at a time so that a large table streams without being held in memory."""
    writer = csv.writer(_Line(), lineterminator="\n")
    names = [column.name for column in format_class.columns]
    yield writer.writerow(names)
    for row in format_class.export_rows(rows):
        yield writer.writerow([escape_cell(row[name]) for name in names])


def export_csv(format_class: type[ImportFormat], out: IO[str], rows: QuerySet[Any] | None = None) -> int:
    """Writes every record of a kind (or those of `rows`) to `out` as the CSV file `import` reads back; returns the
    row count."""
    count = -1  # the header is no record
    for line in csv_lines(format_class, rows):
        out.write(line)
        count += 1
    return count
