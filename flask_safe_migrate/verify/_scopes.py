"""Each Python scope of a module, indexed once: its calls in source order and the names it binds.

The extractor and the point checks ask the same questions for every call of
a module: which binding of ``sql`` reaches this call, is a transaction open
here, which names hold connections. Walking the whole function again for
each call made verify quadratic in the number of calls per file (a
2000-call ``db_migrate.py`` took minutes). The index is built in one walk;
each question is then answered in the depth of the call or the number of
bindings of one name.

A *scope* is the innermost function around a node, or the module. Class
bodies and lambdas belong to the scope around them.
"""

from __future__ import annotations

import ast
import dataclasses
import typing as t

Function = ast.FunctionDef | ast.AsyncFunctionDef
Scope = ast.Module | ast.FunctionDef | ast.AsyncFunctionDef
Position = tuple[int, int]

#: ``assign``: ``name = value`` (or annotated); ``augassign``: ``name += value``;
#: ``for``: ``for name in value``; ``param``: a parameter of the function;
#: ``other``: anything whose value cannot be read (unpacking, ``with ... as``,
#: ``:=``, imports, ``global``, a ``def``/``class`` of that name).
BindingKind = t.Literal["assign", "augassign", "for", "param", "other"]

_TXN_BEGIN = "begin"
_TXN_END = frozenset({"commit", "rollback", "close"})
#: Calls that open a connection (``engine.begin()``, ``engine.connect()``...).
CONNECTION_OPENERS = frozenset({"begin", "connect", "raw_connection"})


def call_name(call: ast.Call) -> str:
    """The called attribute or name (``conn.execute(...)`` → ``execute``)."""
    func = call.func
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else ""


@dataclasses.dataclass(frozen=True, slots=True)
class Binding:
    """One place where a scope binds a name.

    ``node`` is the statement (or ``:=`` expression) that binds it, ``value``
    the expression bound (the iterable for ``for``, the right-hand side for
    ``+=``), ``position`` where ``node`` starts.
    """

    name: str
    kind: BindingKind
    node: ast.AST
    value: ast.expr | None
    position: Position


@dataclasses.dataclass
class ScopeIndex:
    """What one scope contains, in source order."""

    node: Scope
    calls: list[ast.Call] = dataclasses.field(default_factory=list)
    bindings: dict[str, list[Binding]] = dataclasses.field(default_factory=dict)
    connections: set[str] = dataclasses.field(default_factory=set)
    #: the ``x.begin()`` (not in a ``with``) left open before each call, if any
    open_before: dict[ast.Call, ast.Call] = dataclasses.field(default_factory=dict)


class ModuleIndex:
    """Every scope of a module, and where each statement sits in its block."""

    def __init__(self, tree: ast.Module) -> None:
        self.tree = tree
        #: every node's parent (the module has none)
        self.parents: dict[ast.AST, ast.AST] = {}
        #: every ``from ... import ...``, in no particular order
        self.imports_from: list[ast.ImportFrom] = []
        #: every call of the module, in source order
        self.calls: list[ast.Call] = []
        self.scopes: dict[ast.AST, ScopeIndex] = {tree: ScopeIndex(tree)}
        self.scope_of_node: dict[ast.AST, Scope] = {}
        #: statement → (block owner, field, index in that block)
        self.slots: dict[ast.AST, tuple[ast.AST, str, int]] = {}
        self._walk()
        for scope in self.scopes.values():
            for bindings in scope.bindings.values():
                bindings.sort(key=lambda b: b.position)
            self._transactions(scope)

    # -- building -------------------------------------------------------------------

    def _walk(self) -> None:
        stack: list[tuple[ast.AST, Scope]] = [(self.tree, self.tree)]
        while stack:
            node, scope = stack.pop()
            inner: Scope = scope
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self._bind(scope, node.name, "other", node, None)
                inner = node
                self.scopes[node] = ScopeIndex(node)
                args = node.args
                for arg in (
                    *args.posonlyargs,
                    *args.args,
                    *args.kwonlyargs,
                    *(a for a in (args.vararg, args.kwarg) if a is not None),
                ):
                    self.scopes[node].bindings.setdefault(arg.arg, []).append(
                        Binding(arg.arg, "param", node, None, (0, 0))
                    )
            else:
                self._bindings_of(node, scope)
            if isinstance(node, ast.Call):
                self.calls.append(node)
                self.scope_of_node[node] = scope
            elif isinstance(node, ast.ImportFrom):
                self.imports_from.append(node)
            for field, value in ast.iter_fields(node):
                if isinstance(value, list):
                    for position, item in enumerate(value):
                        if isinstance(item, ast.stmt):
                            self.slots[item] = (node, field, position)
                        if isinstance(item, ast.AST):
                            self.parents[item] = node
                            stack.append((item, inner))
                elif isinstance(value, ast.AST):
                    self.parents[value] = node
                    stack.append((value, inner))
        self.calls.sort(key=lambda call: (call.lineno, call.col_offset))
        for call in self.calls:
            self.scopes[self.scope_of_node[call]].calls.append(call)

    def _bind(
        self, scope: Scope, name: str, kind: BindingKind, node: ast.AST, value: ast.expr | None
    ) -> None:
        position = (getattr(node, "lineno", 0), getattr(node, "col_offset", 0))
        self.scopes[scope].bindings.setdefault(name, []).append(
            Binding(name, kind, node, value, position)
        )

    def _targets(self, scope: Scope, target: ast.AST, node: ast.AST) -> None:
        """Names bound by unpacking (``a, b = ...``): values that cannot be read."""
        for child in ast.walk(target):
            if isinstance(child, ast.Name):
                self._bind(scope, child.id, "other", node, None)

    def _bindings_of(self, node: ast.AST, scope: Scope) -> None:
        index = self.scopes[scope]
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    self._bind(scope, target.id, "assign", node, node.value)
                else:
                    self._targets(scope, target, node)
            if isinstance(node.value, ast.Call) and call_name(node.value) in CONNECTION_OPENERS:
                index.connections.update(x.id for x in node.targets if isinstance(x, ast.Name))
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            if isinstance(node.target, ast.Name):
                self._bind(scope, node.target.id, "assign", node, node.value)
        elif isinstance(node, ast.AugAssign):
            if isinstance(node.target, ast.Name):
                self._bind(scope, node.target.id, "augassign", node, node.value)
        elif isinstance(node, (ast.For, ast.AsyncFor)):
            if isinstance(node.target, ast.Name):
                self._bind(scope, node.target.id, "for", node, node.iter)
            else:
                self._targets(scope, node.target, node)
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            for item in node.items:
                if item.optional_vars is not None:
                    self._targets(scope, item.optional_vars, node)
                    expr = item.context_expr
                    if (
                        isinstance(expr, ast.Call)
                        and call_name(expr) in CONNECTION_OPENERS
                        and isinstance(item.optional_vars, ast.Name)
                    ):
                        index.connections.add(item.optional_vars.id)
        elif isinstance(node, ast.NamedExpr):
            self._bind(scope, node.target.id, "other", node, None)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                self._bind(scope, (alias.asname or alias.name).split(".")[0], "other", node, None)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            for name in node.names:
                self._bind(scope, name, "other", node, None)
        elif isinstance(node, ast.ClassDef):
            self._bind(scope, node.name, "other", node, None)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            self._bind(scope, node.name, "other", node, None)

    def _transactions(self, scope: ScopeIndex) -> None:
        """For each call, the explicit ``.begin()`` still open before it (one pass)."""
        opened: ast.Call | None = None
        for call in scope.calls:
            if opened is not None:
                scope.open_before[call] = opened
            name = call_name(call)
            if name == _TXN_BEGIN and not isinstance(self.parents.get(call), ast.withitem):
                opened = call
            elif name in _TXN_END:
                opened = None

    # -- questions --------------------------------------------------------------------

    def functions(self) -> list[Function]:
        """Every function and method of the module, in source order."""
        found = [
            node
            for node in self.scopes
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        ]
        return sorted(found, key=lambda f: (f.lineno, f.col_offset))

    def scope(self, node: ast.AST) -> ScopeIndex:
        """The index of the innermost function around ``node`` (or of the module)."""
        known = self.scope_of_node.get(node)
        if known is not None:
            return self.scopes[known]
        current = self.parents.get(node)
        while current is not None:
            if isinstance(current, (ast.FunctionDef, ast.AsyncFunctionDef)):
                return self.scopes[current]
            current = self.parents.get(current)
        return self.scopes[self.tree]

    def outer_scopes(self, scope: ScopeIndex) -> t.Iterator[ScopeIndex]:
        """The scopes around ``scope``, innermost first, the module last."""
        if scope.node is self.tree:
            return
        current = self.parents.get(scope.node)
        while current is not None:
            if isinstance(current, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield self.scopes[current]
            current = self.parents.get(current)
        yield self.scopes[self.tree]

    def ancestors(self, node: ast.AST, stop: ast.AST | None = None) -> list[ast.AST]:
        """``node``'s parents, innermost first, up to (not including) ``stop``."""
        found: list[ast.AST] = []
        current = self.parents.get(node)
        while current is not None and current is not stop:
            found.append(current)
            current = self.parents.get(current)
        return found

    def reaching(self, name: str, at: ast.AST) -> list[Binding]:
        """The bindings of ``name`` in ``at``'s scope that may give its value at ``at``.

        Walks back from ``at`` in source order and stops at the first binding
        that certainly runs before ``at`` on every path (a statement earlier
        in a block that contains ``at``, a loop around ``at``, a parameter):
        anything after it may have replaced its value on some path.
        """
        scope = self.scope(at)
        bindings = scope.bindings.get(name)
        if not bindings:
            return []
        position = (getattr(at, "lineno", 0), getattr(at, "col_offset", 0))
        ancestors = self.ancestors(at, scope.node)
        inside = set(ancestors)
        found: list[Binding] = []
        for binding in reversed(bindings):
            if binding.kind == "param":
                found.append(binding)
                return found
            if binding.node in inside:
                if (
                    isinstance(binding.node, (ast.For, ast.AsyncFor))
                    and binding.value not in inside
                ):
                    found.append(binding)  # the loop variable, inside the loop's body
                    return found
                continue  # ``sql = f(sql)``: the call runs before this binding
            if binding.position >= position:
                continue
            found.append(binding)
            if self._dominates(binding.node, ancestors):
                return found
        return found

    def _dominates(self, node: ast.AST, ancestors: list[ast.AST]) -> bool:
        """Whether statement ``node`` runs on every path to the node with these ancestors."""
        slot = self.slots.get(node)
        if slot is None:
            return False
        owner, field, index = slot
        for ancestor in ancestors:
            other = self.slots.get(ancestor)
            if other is not None and other[0] is owner and other[1] == field:
                return other[2] > index
        return False
