"""Rows as a graph of foreign keys, serialised without the key values a retry may change.

A rolled-back attempt consumes sequence numbers (and a ``gen_random_uuid()`` key is new on every
run), so a correct retry can end with different keys than a clean run. Such keys are not
compared as values: each row gets a *label* from its own compared columns and the labels of the
rows its foreign keys point at, and a foreign key onto such a key is serialised through the row
it joins to.

The rows form a graph (a foreign key is an edge), which may be deep (a parent chain of
thousands of rows) or cyclic (a row whose ``parent_id`` is its own ``id``, two tables pointing
at each other). Labels are therefore computed without recursion: the strongly connected
components (iterative Tarjan) are labelled children first; inside a cycle, by colour refinement
(Weisfeiler-Lehman) until the number of distinct labels stops growing. Either way a row's label
depends only on the data, never on the key values or on the order the rows were read in.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing as t

#: (schema, table)
TableName = tuple[str, str]
#: (schema, table, column)
ColumnName = tuple[str, str, str]

#: How many characters of a joined row's label a serialised row shows.
_SHOWN = 12


@dataclasses.dataclass(frozen=True)
class Reference:
    """A foreign key whose target columns include a key that is not compared as a value."""

    source: TableName
    columns: tuple[str, ...]
    target: TableName
    target_columns: tuple[str, ...]

    @property
    def field(self) -> str:
        """The name the joined row is serialised under: the source column(s)."""
        return ",".join(self.columns)


def _digest(*parts: t.Any) -> str:
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _hashable(value: t.Any) -> t.Any:
    try:
        hash(value)
    except TypeError:
        return json.dumps(value, sort_keys=True, default=str)
    return value


def serialise(
    rows: dict[TableName, list[dict[str, t.Any]]],
    hidden: set[ColumnName],
    references: list[Reference],
) -> dict[TableName, list[str]]:
    """Every row of ``rows`` as one JSON text, comparable across runs.

    :param hidden: columns left out (sequence-drawn keys, values that vary between clean runs).
    :param references: foreign keys serialised through the row they join to (as
        ``{"→": {<that row's own columns>, "#": <label>}}``; ``{"→": null}`` if no row matches);
        their source columns are not compared as values.
    """
    tables = list(rows)
    outgoing: dict[TableName, list[Reference]] = {}
    for reference in sorted(references, key=lambda r: (r.source, r.field)):
        if reference.source in rows and reference.target in rows:
            outgoing.setdefault(reference.source, []).append(reference)
    joined_columns = {
        table: {c for r in refs for c in r.columns} for table, refs in outgoing.items()
    }
    # Every row is a node: its own compared columns, then its foreign keys as edges.
    start: dict[TableName, int] = {}
    own: list[dict[str, t.Any]] = []
    for table in tables:
        start[table] = len(own)
        skip = joined_columns.get(table, set())
        own.extend(
            {
                name: value
                for name, value in row.items()
                if name not in skip and (table[0], table[1], name) not in hidden
            }
            for row in rows[table]
        )
    indexes: dict[tuple[TableName, tuple[str, ...]], dict[tuple[t.Any, ...], int]] = {}
    for refs in outgoing.values():
        for reference in refs:
            key = (reference.target, reference.target_columns)
            if key not in indexes:
                base = start[reference.target]
                index: dict[tuple[t.Any, ...], int] = {}
                for offset, row in enumerate(rows[reference.target]):
                    values = tuple(_hashable(row.get(c)) for c in reference.target_columns)
                    index.setdefault(values, base + offset)
                indexes[key] = index
    #: Per node, per outgoing reference: the target node, _NULL or _DANGLING.
    fields: list[list[tuple[str, int]]] = [[] for _ in own]
    for table in tables:
        base = start[table]
        for offset, row in enumerate(rows[table]):
            for reference in outgoing.get(table, []):
                values = tuple(row.get(c) for c in reference.columns)
                if any(v is None for v in values):  # MATCH SIMPLE: no reference
                    target = _NULL
                else:
                    index = indexes[(reference.target, reference.target_columns)]
                    target = index.get(tuple(_hashable(v) for v in values), _DANGLING)
                fields[base + offset].append((reference.field, target))
    labels, cyclic = _labels(own, fields)

    def shown(node: int) -> dict[str, t.Any]:
        view = dict(own[node])
        if fields[node] or node in cyclic:
            view["#"] = labels[node][:_SHOWN]
        return view

    out: dict[TableName, list[str]] = {}
    for table in tables:
        base = start[table]
        texts = []
        for node in range(base, base + len(rows[table])):
            row = dict(own[node])
            for name, target in fields[node]:
                row[name] = None if target == _NULL else {"→": _view(target, shown)}
            texts.append(json.dumps(row, sort_keys=True, default=str))
        out[table] = texts
    return out


_NULL = -1
_DANGLING = -2


def _view(target: int, shown: t.Callable[[int], dict[str, t.Any]]) -> dict[str, t.Any] | None:
    return None if target == _DANGLING else shown(target)


def _labels(
    own: list[dict[str, t.Any]], fields: list[list[tuple[str, int]]]
) -> tuple[list[str], set[int]]:
    """A label per node from its own values and its targets' labels; and the nodes on cycles."""
    children = [[target for _, target in node if target >= 0] for node in fields]
    own_text = [json.dumps(values, sort_keys=True, default=str) for values in own]
    labels: list[str] = [""] * len(own)
    cyclic: set[int] = set()

    def edge(target: int, inside: dict[int, str] | None = None) -> str | None:
        if target == _NULL:
            return None
        if target == _DANGLING:
            return "dangling"
        if inside is not None and target in inside:
            return inside[target]
        return labels[target]

    for component in _components(children):
        node = component[0]
        if len(component) == 1 and node not in children[node]:
            labels[node] = _digest(own_text[node], [(n, edge(c)) for n, c in fields[node]])
            continue
        # A cycle: refine colours until the partition is stable (at most one round per node).
        members = set(component)
        cyclic.update(members)
        colour = {
            v: _digest(
                own_text[v],
                [(n, "·" if c in members else edge(c)) for n, c in fields[v]],
            )
            for v in component
        }
        distinct = len(set(colour.values()))
        for _ in range(len(component)):
            colour = {
                v: _digest(colour[v], [(n, edge(c, colour)) for n, c in fields[v]])
                for v in component
            }
            before, distinct = distinct, len(set(colour.values()))
            if distinct == before:
                break
        for v in component:
            labels[v] = _digest("cycle", colour[v])
    return labels, cyclic


def _components(children: list[list[int]]) -> list[list[int]]:
    """Strongly connected components, each after every component it reaches (Tarjan, no recursion)."""
    count = len(children)
    index = [-1] * count
    low = [0] * count
    on_stack = [False] * count
    stack: list[int] = []
    found: list[list[int]] = []
    counter = 0
    for root in range(count):
        if index[root] != -1:
            continue
        work = [(root, 0)]
        while work:
            node, position = work[-1]
            if index[node] == -1:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack[node] = True
            kids = children[node]
            descended = False
            while position < len(kids):
                child = kids[position]
                position += 1
                if index[child] == -1:
                    work[-1] = (node, position)
                    work.append((child, 0))
                    descended = True
                    break
                if on_stack[child]:
                    low[node] = min(low[node], index[child])
            if descended:
                continue
            work.pop()
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack[member] = False
                    component.append(member)
                    if member == node:
                        break
                found.append(component)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return found
