"""Rows from the file to the format: each record's cells parsed by the columns' parsers, then handed to the
format row by row (`add`), or, for a PipelinedFormat, staged in a parsing thread and written a chunk at a time
by the database thread."""

import contextlib
import queue
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .cells import unescape_cell
from .formats import ImportFormat, PipelinedFormat, RowError

if TYPE_CHECKING:
    from .run import ImportRun

PROGRESS_ROWS = 5000  # rows between two progress reports

Parsed = Iterator[tuple[int, dict[str, Any], list[str]]]


def feed(
    run: "ImportRun", fmt: ImportFormat, rows: Iterator[tuple[int, list[str]]], positions: list[int | None], width: int
) -> None:
    """Hands every data row to the format; a refused row is recorded and the others go on."""
    parsed = parsed_rows(run, rows, positions, width)
    if isinstance(fmt, PipelinedFormat):
        _feed_pipelined(run, fmt, parsed, positions)
        return
    for line, values, raw in parsed:
        try:
            fmt.add(line, values)
        except RowError as error:
            run.reject(line, error.column, error.message, in_column_order(raw, positions))


def parsed_rows(
    run: "ImportRun", rows: Iterator[tuple[int, list[str]]], positions: list[int | None], width: int
) -> Parsed:
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
        if run.read % PROGRESS_ROWS == 0:
            run.progress()
        if len(row) != width:
            run.reject(line, "row", f"expected {width} fields, found {len(row)}", [unescape_cell(c) for c in row])
            continue
        values: dict[str, Any] = {}
        for name, parse, required, position in cells:
            cell = row[position].strip() if position is not None else ""
            if cell[:1] == "'":  # (a cheap test first: this loop runs for every cell of a million-row file)
                cell = unescape_cell(cell)
            if "\x00" in cell:
                run.reject(
                    line, name, "contains a NUL character, which no text may hold", in_column_order(row, positions)
                )
                break
            if not cell:
                if required:
                    run.reject(line, name, "required", in_column_order(row, positions))
                    break
                values[name] = None
                continue
            try:
                values[name] = parse(cell)
            except ValueError as error:
                run.reject(line, name, str(error), in_column_order(row, positions))
                break
        else:
            yield line, values, row


def in_column_order(row: list[str], positions: list[int | None]) -> list[str]:
    return [unescape_cell(row[p]) if p is not None else "" for p in positions]


_DONE = object()


def _feed_pipelined(run: "ImportRun", fmt: PipelinedFormat, parsed: Parsed, positions: list[int | None]) -> None:
    chunks: queue.Queue[Any] = queue.Queue(maxsize=2)
    stop = threading.Event()

    def parse() -> None:
        try:
            chunk: list[tuple[Any, ...]] = []
            size = min(fmt.first_chunk_rows or fmt.chunk_rows, fmt.chunk_rows)
            for line, values, raw in parsed:
                if stop.is_set():  # the database thread gave up: no one will read what follows
                    return
                try:
                    chunk.append(fmt.stage(line, values))
                except RowError as error:
                    run.reject(line, error.column, error.message, in_column_order(raw, positions))
                if len(chunk) >= size:
                    chunks.put(fmt.encode_chunk(chunk))
                    chunk = []
                    size = min(2 * size, fmt.chunk_rows)
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
