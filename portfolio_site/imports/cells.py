"""Cells a spreadsheet would run.

A cell whose text starts with one of `FORMULA_TRIGGERS` is run as a formula when the file is opened in a
spreadsheet (OWASP, "CSV Injection"): every file the engine writes (exports, rejects) prefixes such a cell with a
single quote, which spreadsheets show as text, and every file it reads takes that quote off again.

The pair is exactly invertible: a quote is added when the text is any number of quotes followed by a trigger, and
taken off only from such text, so a value that really starts with a quote (`'=x`) gains a second one on the way
out and keeps its own on the way back. A plain number (`-100.0000`, `+5`) is no formula and is left as it is, so
that other readers of the file still see a number; the import unescapes every cell before it parses it anyway, so
a quoted number would read back too.
"""

import re

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
