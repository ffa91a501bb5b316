"""The one place exports are written, so that every kind's cells are escaped the same way."""

import csv
from typing import IO

from .cells import escape_cell
from .formats import ImportFormat


def export_csv(format_class: type[ImportFormat], out: IO[str]) -> int:
    """Writes every record of a kind to `out` as the CSV file `import` reads back; returns the row count."""
    writer = csv.writer(out, lineterminator="\n")
    names = [column.name for column in format_class.columns]
    writer.writerow(names)
    count = 0
    for row in format_class.export_rows():
        writer.writerow([escape_cell(row[name]) for name in names])
        count += 1
    return count
