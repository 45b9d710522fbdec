"""``new --autogenerate`` and ``check``: the app's models against the live database.

The comparison is Alembic's (``produce_migrations``, the engine behind
``flask db migrate``), used as a library: a hand-written differ would miss
the hundred corner cases Alembic already handles. It is an optional extra
(``pip install flask-safe-migrate[autogenerate]``); nothing else imports it.
This package's own tables (``safe_migrate_ledger*``) are filtered out with
``include_object``, so they never show up as "tables to drop".

The operations are rendered to SQL with Alembic's offline (``as_sql``)
mode, then rewritten into lock-safe forms on PostgreSQL:

* a new index on an existing table becomes ``CREATE INDEX CONCURRENTLY IF
  NOT EXISTS`` (and a dropped one ``DROP INDEX CONCURRENTLY IF EXISTS``) in
  a second, ``no-transaction`` file, because ``CONCURRENTLY`` cannot run in a
  transaction and a plain ``CREATE INDEX`` blocks writes for the whole build;
* a new foreign key on an existing table is added ``NOT VALID`` (a short
  lock, no scan) and validated in the second file with ``VALIDATE
  CONSTRAINT``, which scans under a lock that lets reads and writes through;
* a new unique constraint on an existing table becomes ``CREATE UNIQUE INDEX
  CONCURRENTLY`` in the second file, then ``ADD CONSTRAINT ... UNIQUE USING
  INDEX`` (a brief lock, no build) in a third, transactional file;
* a column made ``NOT NULL`` gets ``CHECK (col IS NOT NULL) NOT VALID`` in
  the first file, ``VALIDATE CONSTRAINT`` in the second, and ``SET NOT NULL``
  (which then skips its full-table scan, PostgreSQL 12+) plus ``DROP
  CONSTRAINT`` of the check in the third.

Indexes of tables created in the same migration stay plain: the table is
empty and new, nothing waits on it. The written files are checked with
``verify`` (on the whole directory, so evidence from earlier files counts),
and what it finds is reported with them.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import pathlib
import typing as t

from .errors import BadInputError
from .errors import ConfigError
from .errors import MigrationError
from .executor import run_with_retry

if t.TYPE_CHECKING:
    from alembic.operations import ops as alembic_ops
    from sqlalchemy import MetaData

    from .extension import SafeMigrate
    from .runner import Runner
    from .verify import Finding

ALLOW_VALIDATE = (
    "-- safe-migrate: allow non-idempotent -- VALIDATE CONSTRAINT on a valid constraint is a no-op"
)


def _require_alembic() -> None:
    try:
        import alembic  # noqa: F401
    except ImportError:
        raise ConfigError(
            "--autogenerate and check compare models with Alembic's comparison API, which is "
            "not installed: pip install 'flask-safe-migrate[autogenerate]'"
        ) from None


def metadata_of(ext: SafeMigrate, bind: str | None = None) -> MetaData:
    """The Flask-SQLAlchemy metadata of the app's models (of one bind)."""
    from flask import current_app

    db = ext._state().db or current_app.extensions.get("sqlalchemy")
    if db is None:
        raise ConfigError(
            "no Flask-SQLAlchemy object: pass it (SafeMigrate(app, db)) so the models can be "
            "compared with the database"
        )
    metadatas = getattr(db, "metadatas", None)
    if metadatas is not None:
        if bind not in metadatas:
            raise ConfigError(f"no models for bind {bind!r}")
        return t.cast("MetaData", metadatas[bind])
    return t.cast("MetaData", db.metadata)


@dataclasses.dataclass
class Rendered:
    """The SQL of the three files (any may be empty) and a line per change.

    ``main`` runs in one transaction, ``concurrent`` after it without one
    (``CONCURRENTLY``, ``VALIDATE``), ``finish`` after that in one transaction
    (what needs the concurrent part done: ``USING INDEX``, ``SET NOT NULL``).
    """

    main: list[str]
    main_down: list[str] | None
    concurrent: list[str]
    concurrent_down: list[str]
    changes: list[str]
    finish: list[str] = dataclasses.field(default_factory=list)
    finish_down: list[str] = dataclasses.field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.main and not self.concurrent and not self.finish


@dataclasses.dataclass(frozen=True, slots=True)
class _Raw:
    """A statement written here rather than by Alembic, with the one that reverts it."""

    sql: str
    down: str


def _quote(name: str) -> str:
    from sqlalchemy.dialects import postgresql

    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    return str(dialect.identifier_preparer.quote(name))


def _table(table: str, schema: str | None) -> str:
    return f"{_quote(schema)}.{_quote(table)}" if schema else _quote(table)


def _name(*parts: str) -> str:
    """A Postgres identifier made of ``parts`` (at most 63 bytes, like Postgres' own)."""
    return "_".join(parts)[:63]


def _flatten(operations: t.Sequence[t.Any]) -> list[t.Any]:
    flat: list[t.Any] = []
    for op in operations:
        inner = getattr(op, "ops", None)
        if inner is not None:
            flat.extend(_flatten(inner))
        else:
            flat.append(op)
    return flat


def compare(runner: Runner, metadata: MetaData) -> list[alembic_ops.MigrateOperation]:
    """Alembic's upgrade operations that bring the database to ``metadata``."""
    _require_alembic()
    from alembic.autogenerate import produce_migrations
    from alembic.migration import MigrationContext

    prefix = runner.db.ledger_table

    def include_object(
        obj: t.Any, name: str | None, type_: str, reflected: bool, compare_to: t.Any
    ) -> bool:
        table = name if type_ == "table" else getattr(getattr(obj, "table", None), "name", None)
        return not (table or "").startswith(prefix)

    def work(conn: t.Any) -> t.Any:
        context = MigrationContext.configure(
            conn, opts={"include_object": include_object, "compare_type": True}
        )
        return produce_migrations(context, metadata)

    # Read-only reflection: retried as a whole on a new connection when it drops.
    script, _ = run_with_retry(
        runner.db.engine, work, policy=runner.policy, label="comparing the models with the database"
    )
    assert script.upgrade_ops is not None
    return _flatten(script.upgrade_ops.ops)


def render(operations: list[t.Any], dialect: str) -> Rendered:
    """SQL for ``operations``, lock-safe on PostgreSQL (see the module docstring)."""
    from alembic.operations import ops

    new_tables = {op.table_name for op in operations if isinstance(op, ops.CreateTableOp)}
    postgres = dialect == "postgresql"
    main: list[t.Any] = []
    concurrent: list[t.Any] = []
    validates: list[tuple[str, str, str | None, str]] = []  # table, constraint, schema, note
    finish: list[_Raw] = []
    for op in operations:
        if postgres and isinstance(op, ops.CreateIndexOp) and op.table_name not in new_tables:
            op.kw["postgresql_concurrently"] = True
            op.if_not_exists = True
            concurrent.append(op)
        elif postgres and isinstance(op, ops.DropIndexOp) and op.table_name not in new_tables:
            op.kw["postgresql_concurrently"] = True
            op.if_exists = True
            concurrent.append(op)
        elif (
            postgres
            and isinstance(op, ops.CreateForeignKeyOp)
            and op.source_table not in new_tables
        ):
            if not op.constraint_name:
                op.constraint_name = f"{op.source_table}_{'_'.join(op.local_cols)}_fkey"
            main.append(op)
            validates.append(
                (op.source_table, str(op.constraint_name), op.kw.get("source_schema"), "")
            )
        elif (
            postgres
            and isinstance(op, ops.CreateUniqueConstraintOp)
            and op.table_name not in new_tables
        ):
            # Build the index without blocking writes, then adopt it (a brief lock).
            name = str(op.constraint_name or _name(op.table_name, *op.columns, "key"))
            table = _table(op.table_name, op.schema)
            columns = ", ".join(_quote(c) for c in op.columns)
            concurrent.append(
                _Raw(
                    f"CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS {_quote(name)} "
                    f"ON {table} ({columns})",
                    f"DROP INDEX CONCURRENTLY IF EXISTS {_table(name, op.schema)}",
                )
            )
            finish.append(
                _Raw(
                    f"ALTER TABLE {table} ADD CONSTRAINT {_quote(name)} UNIQUE "
                    f"USING INDEX {_quote(name)}",
                    f"ALTER TABLE {table} DROP CONSTRAINT {_quote(name)}",
                )
            )
        elif (
            postgres
            and isinstance(op, ops.AlterColumnOp)
            and op.modify_nullable is False
            and op.table_name not in new_tables
        ):
            # SET NOT NULL scans the table under ACCESS EXCLUSIVE unless a
            # validated CHECK (col IS NOT NULL) already proves it.
            table = _table(op.table_name, op.schema)
            column = _quote(op.column_name)
            check_name = _name(op.table_name, op.column_name, "not_null")
            check = _quote(check_name)
            add_check = f"ALTER TABLE {table} ADD CONSTRAINT {check} CHECK ({column} IS NOT NULL)"
            main.append(
                _Raw(
                    f"{add_check} NOT VALID",
                    f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {check}",
                )
            )
            note = (
                f"-- Fails while {op.table_name}.{op.column_name} has NULLs: fill them first "
                "(m.backfill in an earlier migration).\n"
            )
            validates.append((op.table_name, check_name, op.schema, note))
            finish.append(
                _Raw(
                    f"ALTER TABLE {table} ALTER COLUMN {column} SET NOT NULL",
                    f"ALTER TABLE {table} ALTER COLUMN {column} DROP NOT NULL",
                )
            )
            finish.append(
                _Raw(
                    f"ALTER TABLE {table} DROP CONSTRAINT {check}",
                    f"{add_check} NOT VALID",
                )
            )
            rest = copy.copy(op)
            rest.modify_nullable = None
            if rest.has_changes():  # a type or default change in the same operation
                main.append(rest)
        else:
            if isinstance(op, ops.AddColumnOp) and (op.column.index or op.column.unique):
                # Alembic's add_column also emits the column's index / unique
                # constraint; autogenerate lists those as separate operations
                # (the index one made lock-safe above), so render the bare column.
                column_copy = op.column._copy()
                column_copy.index = None
                column_copy.unique = None
                op = ops.AddColumnOp(op.table_name, column_copy, schema=op.schema)
            main.append(op)

    def sql_of(op: t.Any) -> str:
        return op.sql if isinstance(op, _Raw) else _render_one(op, dialect)

    main_sql = []
    changes = []
    for op in main:
        sql = sql_of(op)
        if (
            isinstance(op, ops.CreateForeignKeyOp)
            and postgres
            and op.source_table not in new_tables
        ):
            sql += " NOT VALID"
        main_sql.append(sql)
        changes.append(_summary(sql))
    concurrent_sql = [sql_of(op) for op in concurrent]
    changes += [_summary(sql) for sql in concurrent_sql]
    for table, name, schema, note in validates:
        concurrent_sql.append(
            f"{note}{ALLOW_VALIDATE}\nALTER TABLE {_table(table, schema)} VALIDATE CONSTRAINT "
            f"{_quote(name)}"
        )
    finish_sql = [item.sql for item in finish]
    changes += [_summary(sql) for sql in finish_sql]
    main_down: list[str] | None = []
    try:
        for op in reversed(main):
            assert main_down is not None
            main_down.append(op.down if isinstance(op, _Raw) else sql_of(op.reverse()))
    except (NotImplementedError, ValueError, AttributeError, TypeError):
        main_down = None
    concurrent_down = []
    for op in reversed(concurrent):
        if isinstance(op, _Raw):
            concurrent_down.append(op.down)
        elif isinstance(op, ops.CreateIndexOp):
            drop = ops.DropIndexOp(
                op.index_name or "", op.table_name, schema=op.schema, if_exists=True
            )
            drop.kw["postgresql_concurrently"] = True
            concurrent_down.append(sql_of(drop))
    if concurrent_sql and not concurrent_down:
        concurrent_down.append("SELECT 1")  # VALIDATE / DROP INDEX: nothing to revert
    finish_down = [item.down for item in reversed(finish)]
    return Rendered(
        main_sql, main_down, concurrent_sql, concurrent_down, changes, finish_sql, finish_down
    )


def _render_one(op: t.Any, dialect: str) -> str:
    from alembic.migration import MigrationContext
    from alembic.operations import Operations

    buffer = io.StringIO()
    context = MigrationContext.configure(
        dialect_name=dialect, opts={"as_sql": True, "output_buffer": buffer}
    )
    Operations(context).invoke(op)
    return buffer.getvalue().strip().rstrip(";").strip()


def _summary(sql: str) -> str:
    line = " ".join(sql.split())
    return line if len(line) <= 100 else line[:99] + "…"


def _file_text(title: str, header: list[str], up: list[str], down: list[str] | None) -> str:
    lines = [
        f"-- {title}",
        "-- Generated by `flask safe-migrate new --autogenerate`: review it.",
        *header,
    ]
    body = "\n".join(lines) + "\n\n" + "".join(f"{sql};\n\n" for sql in up)
    if down is None:
        body += "-- No down part: an operation above cannot be reversed automatically.\n"
    elif down:
        body += "-- safe-migrate: down\n" + "".join(f"{sql};\n" for sql in down)
    return body


def _refuse_pending(runner: Runner) -> None:
    pending = runner.status().pending
    if pending:
        names = ", ".join(f"{m.version}_{m.name}" for m in pending[:5])
        raise MigrationError(
            f"the database is not up to date ({len(pending)} pending: {names}); comparing it "
            "with the models would repeat what those migrations do. Run them first "
            "(flask safe-migrate run)"
        )


def diff(runner: Runner, ext: SafeMigrate, *, bind: str | None = None) -> Rendered:
    """The lock-safe SQL that would bring the database to the models."""
    _require_alembic()
    _refuse_pending(runner)
    operations = compare(runner, metadata_of(ext, bind))
    return render(operations, runner.db.backend)


@dataclasses.dataclass(frozen=True, slots=True)
class Generated:
    """What ``new --autogenerate`` wrote, and what ``verify`` says about it."""

    paths: list[pathlib.Path]
    changes: list[str]
    findings: list[Finding] = dataclasses.field(default_factory=list)


def write_autogenerated(
    runner: Runner, ext: SafeMigrate, slug: str, *, bind: str | None = None
) -> Generated:
    """Write the migration file(s) for the model changes (none when there are none).

    Up to three files, in order: the transactional part, the no-transaction
    part (``CONCURRENTLY``, ``VALIDATE``), and the transactional part that
    needs it done (``USING INDEX``, ``SET NOT NULL``). On PostgreSQL they are
    then verified with the rest of the directory; the findings on the new
    files come back in :attr:`Generated.findings`.
    """
    from .scaffold import new_migration
    from .scaffold import next_version
    from .scaffold import slugify

    rendered = diff(runner, ext, bind=bind)
    if rendered.empty:
        return Generated([], [])
    name = slugify(slug)
    directory = runner.directory
    version = next_version(directory)
    parts = [
        (name, name, [], rendered.main, rendered.main_down),
        (
            f"{name}_concurrently",
            f"{name}: the lock-safe part (no transaction)",
            ["-- safe-migrate: no-transaction"],
            rendered.concurrent,
            rendered.concurrent_down,
        ),
        (
            f"{name}_finish",
            f"{name}: what needs the no-transaction part done first",
            [],
            rendered.finish,
            rendered.finish_down,
        ),
    ]
    paths = []
    for file_slug, title, header, up, down in parts:
        if not up:
            continue
        body = _file_text(title, header, up, down)
        paths.append(new_migration(directory, file_slug, version=version, body=body))
        version = str(int(version) + 1).zfill(len(version))
    if not paths:  # pragma: no cover - rendered.empty covers it
        raise BadInputError("nothing to write")
    findings: list[Finding] = []
    if runner.db.is_postgres:
        findings = verify_written(ext, directory, paths)
    return Generated(paths, rendered.changes, findings)


def verify_written(ext: SafeMigrate, directory: str, paths: list[pathlib.Path]) -> list[Finding]:
    """``verify`` on the whole directory, keeping the unsuppressed findings on ``paths``.

    The whole directory, because evidence can sit in an earlier file (a
    validated ``CHECK (col IS NOT NULL)`` before a ``SET NOT NULL``).
    """
    from .verify import verify_paths

    settings = ext.settings()
    report = verify_paths(
        [directory],
        seed_max_rows=settings.seed_max_rows,
        retry_functions=settings.verify_retry_functions,
        cwd=directory,
    )
    names = {path.name for path in paths}
    return [f for f in report.findings if f.path in names and f.suppressed is None]
