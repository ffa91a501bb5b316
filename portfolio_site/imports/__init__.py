"""The CSV import engine: every kind of file goes through the same run, and each app declares its own kinds.

Modules, by concern (import from them; the package itself exports nothing, so that importing it loads no models):

    formats.py    what a kind declares (Column, RowError, ImportFormat, PipelinedFormat), the lifecycle every
                  format follows, the FORMATS registry and the permission check
    reading.py    bytes to records: UTF-8 with or without BOM, `,` or `;`, line numbers, header matching
    pipeline.py   records to the format: cells parsed, rows handed over one by one, or parsed in a second
                  thread and written a chunk at a time (PipelinedFormat)
    run.py        run_import: the ImportBatch (created running, finished succeeded / failed / dry run), the one
                  transaction, the single write gate (`ImportRun.may_write`: all or nothing, --skip-invalid, dry
                  run), the rejects file, CommandLineActor
    staging.py    Staging, a temporary table rows are streamed into (COPY on PostgreSQL), as a context manager
    upsert.py     UpsertFormat, for kinds that create or update one model's rows by natural key
    parsing.py    cell parsers; cells.py: formula-safe cells; exporting.py: export_csv

The one way to add a kind:

1. In the owning app's `importers.py`, subclass `ImportFormat` (or `UpsertFormat` for a model upserted by
   natural key, `PipelinedFormat` for files of millions of rows) and decorate it with `@register`. Declare
   `kind`, `description`, `columns` (rows name related rows by natural key, never by id) and `permissions`.
2. Implement the hooks of the lifecycle (formats.py): `prepare`, `add` (or `stage` + `write_chunk`), `check`,
   `write`, `close`; and `export_rows` so that `manage.py export` writes what the import reads back. Take the rules
   from the app's services (call them, or their check functions); resolve related rows only among those
   `visible_to(self.run.actor)`, and re-check inside the transaction (the services' locks do).
3. Write only when `self.run.may_write`, and give every row it creates `import_batch=self.run.batch`.
4. Add an `Example` for the kind to `tests/test_contract.py` (a valid row, a bad cell, a row outside an advisor's
   visibility if rows name clients): the contract test then runs the kind through every rule above, and fails
   for a registered kind without one. Add an example file to docs/examples/.

The app's `importers.py` is imported by `ImportsConfig.ready`; nothing else is wired by hand.
"""
