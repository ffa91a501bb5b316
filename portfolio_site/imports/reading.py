"""From bytes to records: decoding (UTF-8, with or without BOM), the delimiter (`,` or `;`), CSV syntax, line
numbers and header matching (case-insensitive; unknown, missing and repeated columns are errors).

Nothing here knows a run: a problem with the file itself is raised as `FileProblem`, which stops the run.
"""

import csv
import hashlib
import io
from collections.abc import Iterator
from typing import Any, BinaryIO

from .formats import Column


class FileProblem(Exception):
    """The file itself is unreadable (encoding, CSV syntax, header): nothing of it is imported."""

    def __init__(self, line: int, column: str, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.column = column
        self.message = message


class HashingReader(io.RawIOBase):
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


def decoded_lines(source: HashingReader) -> Iterator[str]:
    """The file's physical lines as text, decoded one by one so that a bad byte is reported at its line."""
    for number, raw in enumerate(io.BufferedReader(source, buffer_size=1 << 16), start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise FileProblem(number, "file", "not UTF-8 text: save the file as UTF-8") from None
        yield text.removeprefix("\ufeff") if number == 1 else text


def records(lines: Iterator[str]) -> Iterator[tuple[int, list[str]]]:
    """(line where the record starts, cells): a quoted field may span lines. The first is the header."""
    first = next(lines, "")
    if not first.strip():
        raise FileProblem(1, "header", "the file is empty: the first line must name the columns")
    delimiter = ";" if first.count(";") > first.count(",") else ","
    reader = csv.reader(_chain(first, lines), delimiter=delimiter, strict=True)
    line = 1
    try:
        for row in reader:
            yield line, row
            line = reader.line_num + 1
    except csv.Error as error:
        raise FileProblem(line, "file", f"not valid CSV ({error})") from None


def _chain(first: str, rest: Iterator[str]) -> Iterator[str]:
    yield first
    yield from rest


def header_positions(columns: tuple[Column, ...], header: list[str]) -> list[int | None]:
    """For each declared column, the index of its cell in a row (None when an optional one is absent)."""
    names = [name.strip().lower() for name in header]
    declared = [column.name for column in columns]
    unknown = [name for name in names if name not in declared]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    missing = [column.name for column in columns if column.required and column.name not in names]
    problems = []
    if unknown:
        problems.append(f"unknown column(s): {', '.join(unknown)}")
    if missing:
        problems.append(f"missing column(s): {', '.join(missing)}")
    if duplicated:
        problems.append(f"repeated column(s): {', '.join(duplicated)}")
    if problems:
        raise FileProblem(1, "header", f"{'; '.join(problems)} (expected: {', '.join(declared)})")
    return [names.index(column.name) if column.name in names else None for column in columns]
