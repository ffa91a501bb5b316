"""On SQLite, concurrent writers wait for the write lock instead of failing with "database is locked".

The suite's own SQLite database is in memory (one connection), so each writer here opens its own connection to
a database file through the project's backend with the settings' OPTIONS, as two server processes would.
"""

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db.utils import load_backend

DATABASE = settings.DATABASES["default"]
pytestmark = pytest.mark.skipif(DATABASE["ENGINE"] != "portfolio_site.sqlite3", reason="SQLite's locking")


@pytest.fixture(autouse=True)
def _own_database_files(django_db_blocker: Any) -> Any:
    # These connections are to files of the test's own, not to the test database pytest-django guards.
    with django_db_blocker.unblock():
        yield


def connect(path: Path, options: dict[str, Any]) -> Any:
    backend = load_backend(DATABASE["ENGINE"])
    return backend.DatabaseWrapper({**DATABASE, "NAME": str(path), "OPTIONS": options}, alias="concurrency")


def write_after_reading(path: Path, options: dict[str, Any], start: threading.Barrier, errors: list[Exception]) -> None:
    """What a posting does: read (the balance), think, write, inside one transaction."""
    db = connect(path, options)
    try:
        start.wait()
        db.set_autocommit(False, force_begin_transaction_with_broken_autocommit=True)
        with db.cursor() as cursor:
            cursor.execute("SELECT COALESCE(SUM(amount), 0) FROM movement")
            time.sleep(0.2)
            cursor.execute("INSERT INTO movement (amount) VALUES (1)")
        db.commit()
    except Exception as error:
        errors.append(error)
    finally:
        db.close()


def run_two_writers(path: Path, options: dict[str, Any]) -> list[Exception]:
    setup = connect(path, options)
    with setup.cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS movement (id INTEGER PRIMARY KEY, amount INTEGER NOT NULL)")
    setup.close()
    start, errors = threading.Barrier(2), []
    threads = [threading.Thread(target=write_after_reading, args=(path, options, start, errors)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_two_writers_on_a_sqlite_file_both_commit_one_after_the_other(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    assert run_two_writers(path, DATABASE["OPTIONS"]) == []
    db = connect(path, DATABASE["OPTIONS"])
    with db.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM movement")
        assert cursor.fetchone()[0] == 2
        cursor.execute("PRAGMA journal_mode")
        assert cursor.fetchone()[0] == "wal"
    db.close()


def test_without_immediate_transactions_one_of_two_writers_fails_with_database_is_locked(tmp_path: Path) -> None:
    # What the settings prevent: both read under a shared lock, then neither can upgrade it to write.
    options = {key: value for key, value in DATABASE["OPTIONS"].items() if key != "transaction_mode"}
    errors = run_two_writers(tmp_path / "db.sqlite3", options)
    assert [str(error) for error in errors] == ["database is locked"]
