"""A fingerprint of a Postgres database: schema and data, comparable across runs.

Used to prove a faulty run ended exactly where a clean run ends. Values a
retried transaction legitimately changes are left out or translated:

* the ledger and lease tables (timings, attempt counts, hosts);
* columns whose values depend on time or chance: the ones that differ
  between two clean runs when the caller has them (the drill), else the
  date/time columns with a default;
* values drawn from sequences (a rolled-back attempt consumes numbers):
  serial/identity keys are not compared as numbers, and a foreign key
  (one column or several) pointing at one, or at a volatile key such as a
  random uuid, is compared through the row it joins to (see
  :mod:`.row_graph`: no recursion, so cycles and deep chains are fine).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing as t
from collections import Counter

from .row_graph import ColumnName
from .row_graph import Reference
from .row_graph import serialise

if t.TYPE_CHECKING:
    from sqlalchemy.engine import Connection

_TIME_TYPES = ("timestamp", "date", "time", "interval")


@dataclasses.dataclass(frozen=True)
class Fingerprint:
    """Catalog facts plus, per table, a row count and a hash of the row multiset."""

    schema: dict[str, list[str]]
    row_counts: dict[str, int]
    row_hashes: dict[str, str]
    #: The serialised rows themselves (``take(..., keep_rows=True)``), so a difference can
    #: show a row that differs instead of only "the hashes differ". Not compared.
    rows: dict[str, tuple[str, ...]] = dataclasses.field(
        default_factory=dict, compare=False, repr=False
    )
    #: Per (schema, table, column), a digest of the multiset of its values (every column, even
    #: left-out ones): what :meth:`varying` compares. Not compared.
    columns: dict[ColumnName, str] = dataclasses.field(
        default_factory=dict, compare=False, repr=False
    )

    def varying(self, other: Fingerprint) -> set[ColumnName]:
        """The columns whose values differ from ``other``'s (same table, any row).

        Taken on two clean runs of the same migration from the same state, these are the
        columns a migration fills from the clock or at random (``now()``, ``gen_random_uuid()``):
        not a retry's doing, so not compared (``take(..., volatile=...)``).
        """
        return {
            name
            for name in set(self.columns) | set(other.columns)
            if self.columns.get(name) != other.columns.get(name)
        }

    def differences(self, other: Fingerprint) -> list[str]:
        """What differs from ``other`` (empty: identical), in words."""
        found: list[str] = []
        for kind in sorted(set(self.schema) | set(other.schema)):
            mine, theirs = set(self.schema.get(kind, [])), set(other.schema.get(kind, []))
            for item in sorted(theirs - mine):
                found.append(f"{kind}: extra {item}")
            for item in sorted(mine - theirs):
                found.append(f"{kind}: missing {item}")
        for table in sorted(set(self.row_counts) | set(other.row_counts)):
            before, after = self.row_counts.get(table), other.row_counts.get(table)
            if before != after:
                found.append(f"row count of {table} {before} → {after}{self._sample(other, table)}")
            elif self.row_hashes.get(table) != other.row_hashes.get(table):
                found.append(
                    f"rows of {table} differ (same count, {before}){self._sample(other, table)}"
                )
        return found

    def _sample(self, other: Fingerprint, table: str, width: int = 160) -> str:
        """One row only this side has and one only ``other`` has, when both kept their rows."""
        if table not in self.rows or table not in other.rows:
            return ""
        mine, theirs = Counter(self.rows[table]), Counter(other.rows[table])
        gone, new = sorted((mine - theirs).elements()), sorted((theirs - mine).elements())
        parts = []
        if gone:
            parts.append(f"expected {_cut(gone[0], width)}")
        if new:
            parts.append(f"found {_cut(new[0], width)}")
        return f": {', '.join(parts)}" if parts else ""


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _rows(conn: Connection, sql: str, **params: t.Any) -> list[t.Any]:
    from sqlalchemy import text

    return list(conn.execute(text(sql), params))


def take(
    conn: Connection,
    *,
    exclude: t.Iterable[str] = (),
    keep_rows: bool = False,
    volatile: t.Iterable[ColumnName] | None = None,
) -> Fingerprint:
    """Fingerprint the current database of ``conn`` (all non-system schemas).

    :param keep_rows: keep every table's serialised rows, so :meth:`Fingerprint.differences`
        can quote a differing row (the drill does; its scratch databases are small).
    :param volatile: the (schema, table, column) whose values are not to be compared, because
        they differ between two clean runs (see :meth:`Fingerprint.varying`); a foreign key onto
        one is compared through the row it joins to. Default (``None``): without a second run
        to tell, the columns of a date/time type with a default.
    """
    excluded = set(exclude)
    user = "n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') AND n.nspname NOT LIKE 'pg_temp%'"
    tables = [
        (r.nspname, r.relname)
        for r in _rows(
            conn,
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            f" WHERE c.relkind IN ('r', 'p') AND {user} ORDER BY 1, 2",
        )
        if r.relname not in excluded
    ]
    schema: dict[str, list[str]] = {"tables": [f"{s}.{n}" for s, n in tables]}
    columns = _rows(
        conn,
        "SELECT n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod) AS type,"
        " a.attnotnull, pg_get_expr(d.adbin, d.adrelid) AS defn, a.attidentity"
        " FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
        f" WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p') AND {user}"
        " ORDER BY 1, 2, a.attnum",
    )
    schema["columns"] = [
        f"{r.nspname}.{r.relname}.{r.attname} {r.type}{' not null' if r.attnotnull else ''}"
        f"{' default ' + r.defn if r.defn else ''}{' identity' if r.attidentity else ''}"
        for r in columns
        if r.relname not in excluded
    ]
    schema["indexes"] = [
        f"{r.indexdef}{'' if r.indisvalid else ' INVALID'}"
        for r in _rows(
            conn,
            "SELECT pg_get_indexdef(i.indexrelid) AS indexdef, i.indisvalid, c.relname"
            " FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid"
            f" JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {user}",
        )
        if r.relname not in excluded
    ]
    schema["constraints"] = [
        f"{r.relname}.{r.conname} {r.defn}{'' if r.convalidated else ' NOT VALIDATED'}"
        for r in _rows(
            conn,
            "SELECT c.relname, o.conname, pg_get_constraintdef(o.oid) AS defn, o.convalidated"
            " FROM pg_constraint o JOIN pg_class c ON c.oid = o.conrelid"
            f" JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {user}",
        )
        if r.relname not in excluded
    ]
    schema["enums"] = [
        f"{r.nspname}.{r.typname}: {r.labels}"
        for r in _rows(
            conn,
            "SELECT n.nspname, t.typname,"
            " string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder) AS labels"
            " FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid"
            f" JOIN pg_namespace n ON n.oid = t.typnamespace WHERE {user}"
            " GROUP BY n.nspname, t.typname",
        )
    ]
    schema["functions"] = [
        r.defn
        for r in _rows(
            conn,
            "SELECT pg_get_functiondef(p.oid) AS defn FROM pg_proc p"
            f" JOIN pg_namespace n ON n.oid = p.pronamespace WHERE {user} AND p.prokind IN ('f', 'p')",
        )
    ]
    schema["triggers"] = [
        r.defn
        for r in _rows(
            conn,
            "SELECT pg_get_triggerdef(t.oid) AS defn FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
            f" JOIN pg_namespace n ON n.oid = c.relnamespace WHERE NOT t.tgisinternal AND {user}",
        )
    ]
    volatile_set = None if volatile is None else set(volatile)
    counts, hashes, rows, column_digests = _data(conn, tables, columns, volatile_set)
    return Fingerprint(
        {k: sorted(v) for k, v in schema.items()},
        counts,
        hashes,
        rows if keep_rows else {},
        column_digests,
    )


def _data(
    conn: Connection,
    tables: list[tuple[str, str]],
    columns: list[t.Any],
    volatile: set[ColumnName] | None,
) -> tuple[dict[str, int], dict[str, str], dict[str, tuple[str, ...]], dict[ColumnName, str]]:
    drawn = {
        (c.nspname, c.relname, c.attname)
        for c in columns
        if c.attidentity or (c.defn or "").startswith("nextval(")
    }
    if volatile is None:  # no second clean run to tell: time columns with a default
        volatile = {
            (c.nspname, c.relname, c.attname)
            for c in columns
            if c.defn and any(word in c.type for word in _TIME_TYPES)
        }
    keys = drawn | volatile
    # Foreign keys onto those keys (any of their columns): compared through the joined row.
    references = [
        Reference(
            (r.src_schema, r.src_table),
            tuple(r.src_cols),
            (r.dst_schema, r.dst_table),
            tuple(r.dst_cols),
        )
        for r in _rows(
            conn,
            "SELECT sn.nspname AS src_schema, sc.relname AS src_table,"
            " tn.nspname AS dst_schema, tc.relname AS dst_table,"
            " array_agg(sa.attname::text ORDER BY k.i) AS src_cols,"
            " array_agg(ta.attname::text ORDER BY k.i) AS dst_cols"
            " FROM pg_constraint o"
            " JOIN pg_class sc ON sc.oid = o.conrelid"
            " JOIN pg_namespace sn ON sn.oid = sc.relnamespace"
            " JOIN pg_class tc ON tc.oid = o.confrelid"
            " JOIN pg_namespace tn ON tn.oid = tc.relnamespace"
            " CROSS JOIN LATERAL unnest(o.conkey, o.confkey) WITH ORDINALITY AS k(src, dst, i)"
            " JOIN pg_attribute sa ON sa.attrelid = o.conrelid AND sa.attnum = k.src"
            " JOIN pg_attribute ta ON ta.attrelid = o.confrelid AND ta.attnum = k.dst"
            " WHERE o.contype = 'f'"
            " GROUP BY o.oid, sn.nspname, sc.relname, tn.nspname, tc.relname",
        )
    ]
    references = [
        r
        for r in references
        if any((r.target[0], r.target[1], c) in keys for c in r.target_columns)
    ]
    raw: dict[tuple[str, str], list[dict[str, t.Any]]] = {}
    for schema_name, table in tables:
        result = conn.exec_driver_sql(f'SELECT * FROM "{schema_name}"."{table}"')
        raw[(schema_name, table)] = [dict(row._mapping) for row in result]
    serialised = serialise(raw, keys, references)
    counts: dict[str, int] = {}
    hashes: dict[str, str] = {}
    kept_rows: dict[str, tuple[str, ...]] = {}
    column_digests: dict[ColumnName, str] = {}
    for (schema_name, table), rows in raw.items():
        label = f"{schema_name}.{table}"
        texts = sorted(serialised[(schema_name, table)])
        counts[label] = len(rows)
        hashes[label] = hashlib.sha256("\n".join(texts).encode()).hexdigest()
        kept_rows[label] = tuple(texts)
        for name in rows[0] if rows else ():
            values = sorted(json.dumps(r[name], sort_keys=True, default=str) for r in rows)
            column_digests[(schema_name, table, name)] = hashlib.sha256(
                "\n".join(values).encode()
            ).hexdigest()
    return counts, hashes, kept_rows, column_digests
