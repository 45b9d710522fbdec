"""Point 1: every retry opens a new connection and disposes the pool on a disconnect.

flask_safe_migrate's own executor (``execute_with_retry``,
``run_with_retry``, and the runner) satisfies this by construction: each
attempt checks out a fresh connection and transaction, a connection that
failed is invalidated, the pool is disposed on a disconnect, attempts are
bounded and backed off with full jitter.

In scanned Python code, every function that retries database work (named
``execute_with_retry``, or a configured name) is checked:

``retry-connection-outside-loop`` (SM001)
    The connection or transaction (``engine.begin()``, ``engine.connect()``)
    is opened before the retry loop, so every attempt reuses the
    connection that just died ("SSL connection has been closed
    unexpectedly" on every attempt). Open it inside the loop.
``retry-no-dispose`` (SM002)
    Nothing calls ``engine.dispose()`` when an attempt fails: the pool
    keeps handing out connections to the server or pooler that just went
    away. Dispose the pool in the ``except`` of a disconnect.
``retry-unbounded`` (SM003)
    ``while True`` with no attempt limit: an outage turns into a hung
    deploy. Iterate ``range(max_attempts)`` or test a counter.
``retry-no-backoff`` (SM004)
    No sleep between attempts: the retries hammer a server that is
    restarting and are all spent within milliseconds. Sleep with
    exponential backoff (and jitter).
``retry-connection-reused`` (SM005)
    A connection (or session, or cursor) is passed into a retry helper, or
    the helper takes one as a parameter: every attempt runs on that same,
    possibly dead, connection. Pass the engine and let each attempt open
    its own connection.
"""

from __future__ import annotations

import ast
import dataclasses
import typing as t

from ._extract import PyModule
from ._finding import Finding
from ._finding import Rule
from ._finding import Severity
from ._finding import rule_doc
from ._scopes import CONNECTION_OPENERS
from ._scopes import call_name

_FIX_EXECUTOR = (
    "or use flask_safe_migrate.execute_with_retry / run_with_retry, which do all of this"
)

CONNECTION_OUTSIDE_LOOP = Rule(
    code="SM001",
    name="retry-connection-outside-loop",
    point=1,
    severity=Severity.ERROR,
    summary="the retry loop reuses a connection opened before it",
    fix=f"open the connection inside the loop: 'with engine.begin() as conn:' per attempt, {_FIX_EXECUTOR}",
    doc=rule_doc(
        "retry-connection-outside-loop",
        "SM001",
        what="Flags a retry function that opens its connection or transaction (``engine.connect()``, ``engine.begin()``) before its retry loop, or never inside it.",
        why="Every attempt then reuses the connection that just died: behind a pooler a dropped connection fails each retry the same way ('SSL connection has been closed unexpectedly'), and the retries are spent for nothing.",
        instead="Open the connection inside the loop, one per attempt (``with engine.begin() as conn:`` in the loop body), or use ``flask_safe_migrate.execute_with_retry`` / ``run_with_retry``.",
    ),
)
NO_DISPOSE = Rule(
    code="SM002",
    name="retry-no-dispose",
    point=1,
    severity=Severity.ERROR,
    summary="the pool is not disposed when an attempt loses its connection",
    fix=f"call engine.dispose() in the except of a disconnect before retrying, {_FIX_EXECUTOR}",
    doc=rule_doc(
        "retry-no-dispose",
        "SM002",
        what="Flags a retry function that never calls ``engine.dispose()`` when an attempt fails.",
        why="After the server, the pooler or the network drops connections, the pool keeps handing out the dead ones it holds: the next attempts fail on them too.",
        instead="Call ``engine.dispose()`` in the ``except`` of a disconnect before the next attempt, or use ``flask_safe_migrate.execute_with_retry``.",
    ),
)
UNBOUNDED = Rule(
    code="SM003",
    name="retry-unbounded",
    point=1,
    severity=Severity.ERROR,
    summary="the retry loop has no attempt limit",
    fix=f"iterate 'for attempt in range(max_attempts):' or test a counter, {_FIX_EXECUTOR}",
    doc=rule_doc(
        "retry-unbounded",
        "SM003",
        what="Flags a retry loop with no attempt limit (``while True`` with no counter), and an ``@retry`` decorator without ``stop=``.",
        why="An outage turns into a deploy that hangs forever instead of failing with a clear error that someone can act on.",
        instead="Iterate ``for attempt in range(max_attempts):`` or test a counter, and re-raise when the attempts are spent.",
    ),
)
NO_BACKOFF = Rule(
    code="SM004",
    name="retry-no-backoff",
    point=1,
    severity=Severity.ERROR,
    summary="the retry loop does not sleep between attempts",
    fix=f"sleep before the next attempt, growing exponentially with jitter, {_FIX_EXECUTOR}",
    doc=rule_doc(
        "retry-no-backoff",
        "SM004",
        what="Flags a retry loop that does not sleep between attempts, and an ``@retry`` decorator without ``wait=``.",
        why="The attempts hammer a server that is restarting and are all spent within milliseconds, long before it is back.",
        instead="Sleep before the next attempt, growing exponentially with jitter (``time.sleep(min(cap, base * 2 ** attempt) * random.random())``).",
    ),
)
CONNECTION_REUSED = Rule(
    code="SM005",
    name="retry-connection-reused",
    point=1,
    severity=Severity.ERROR,
    summary="a connection passed into a retry helper is reused across attempts",
    fix="pass the engine, not a connection: each attempt must open its own connection",
    doc=rule_doc(
        "retry-connection-reused",
        "SM005",
        what="Flags a connection, session or cursor passed into a retry helper, and a retry helper that takes one as a parameter.",
        why="Every attempt runs on that same connection, dead or not: the retry cannot recover from exactly the failure it exists for.",
        instead="Pass the engine, and let each attempt open its own connection.",
    ),
)

RULES = (CONNECTION_OUTSIDE_LOOP, NO_DISPOSE, UNBOUNDED, NO_BACKOFF, CONNECTION_REUSED)

_CONNECTION_NAMES = frozenset({"conn", "connection", "cursor", "cur", "session", "db_session"})


@dataclasses.dataclass(frozen=True, slots=True)
class Checked:
    """One retry function and what was found in it, for the report's evidence."""

    path: str
    line: int
    name: str
    evidence: tuple[str, ...]


def _calls(node: ast.AST) -> t.Iterator[ast.Call]:
    for child in ast.walk(node):
        if isinstance(child, ast.Call):
            yield child


def _bounded(loop: ast.For | ast.While | ast.AsyncFor) -> bool:
    if not isinstance(loop, ast.While):
        return True
    test = loop.test
    if not (isinstance(test, ast.Constant) and bool(test.value)):
        return True
    for node in ast.walk(loop):
        if isinstance(node, ast.If) and any(
            isinstance(n, ast.Compare) for n in ast.walk(node.test)
        ):
            if any(isinstance(n, (ast.Raise, ast.Return, ast.Break)) for n in ast.walk(node)):
                return True
    return False


def check_definitions(module: PyModule) -> tuple[list[Finding], list[Checked]]:
    """Check every retry function defined in ``module``."""
    findings: list[Finding] = []
    checked: list[Checked] = []
    for function in module.index.functions():
        if function.name not in module.retry_names or function.name in module.package_names:
            continue
        found, evidence = _check_function(module, function)
        findings.extend(found)
        checked.append(Checked(module.path, function.lineno, function.name, tuple(evidence)))
    return findings, checked


def _check_function(
    module: PyModule, function: ast.FunctionDef | ast.AsyncFunctionDef
) -> tuple[list[Finding], list[str]]:
    path, name = module.path, function.name
    snippet = f"def {name}(...)"
    findings: list[Finding] = []
    evidence: list[str] = []

    def finding(rule: Rule, line: int, message: str) -> None:
        findings.append(Finding(rule, path, line, message, rule.fix, snippet))

    for call in _calls(function):
        if call_name(call) in module.package_names:
            evidence.append(
                f"delegates to flask_safe_migrate.{call_name(call)} (line {call.lineno}), which "
                "satisfies point 1 by construction"
            )
            return findings, evidence
    args = function.args
    for arg in (*args.posonlyargs, *args.args, *args.kwonlyargs):
        if arg.arg in _CONNECTION_NAMES:
            finding(
                CONNECTION_REUSED,
                function.lineno,
                f"{name}() takes a connection ({arg.arg}) and so retries on the same, "
                "possibly dead, connection",
            )
    decorator = next(
        (d for d in function.decorator_list if isinstance(d, ast.Call) and call_name(d) == "retry"),
        None,
    )
    loops: list[ast.AST]
    if decorator is not None:
        loops = [function]
        keywords = {k.arg for k in decorator.keywords}
        evidence.append(f"retried by the @retry decorator (line {decorator.lineno})")
        if "stop" not in keywords:
            finding(
                UNBOUNDED, decorator.lineno, f"@retry on {name}() has no stop=: it retries forever"
            )
        else:
            evidence.append("attempts bounded by stop=")
        if "wait" not in keywords:
            finding(NO_BACKOFF, decorator.lineno, f"@retry on {name}() has no wait=: no backoff")
        else:
            evidence.append("backoff by wait=")
    else:
        loops = [
            n
            for n in ast.walk(function)
            if isinstance(n, (ast.For, ast.While, ast.AsyncFor))
            and not any(
                isinstance(p, (ast.For, ast.While, ast.AsyncFor))
                for p in module.index.ancestors(n, function)
            )
        ]
        if not loops:
            evidence.append("has no retry loop (each call makes one attempt)")
            return findings, evidence
        for loop in loops:
            assert isinstance(loop, (ast.For, ast.While, ast.AsyncFor))
            if _bounded(loop):
                kind = "for loop" if not isinstance(loop, ast.While) else "loop condition"
                evidence.append(f"attempts bounded ({kind}, line {loop.lineno})")
            else:
                finding(
                    UNBOUNDED,
                    loop.lineno,
                    f"the retry loop of {name}() is 'while True' with no attempt limit",
                )
    inside = [call for loop in loops for call in _calls(loop)]
    openers = [c for c in inside if call_name(c) in CONNECTION_OPENERS]
    if openers:
        evidence.append(
            f"connection opened inside the loop ({_source(module, openers[0])}, line "
            f"{openers[0].lineno}): a new connection every attempt"
        )
    else:
        outside = [
            c for c in _calls(function) if call_name(c) in CONNECTION_OPENERS and c not in inside
        ]
        if outside:
            finding(
                CONNECTION_OUTSIDE_LOOP,
                outside[0].lineno,
                f"{name}() opens its connection ({_source(module, outside[0])}) before the "
                "retry loop: every attempt reuses it, even after it died",
            )
        elif not any(f.rule is CONNECTION_REUSED for f in findings):
            finding(
                CONNECTION_OUTSIDE_LOOP,
                function.lineno,
                f"{name}() never opens a connection inside its retry loop",
            )
    disposes = [c for c in inside if call_name(c) == "dispose"]
    if disposes:
        evidence.append(f"pool disposed on failure (engine.dispose(), line {disposes[0].lineno})")
    else:
        finding(
            NO_DISPOSE,
            getattr(loops[0], "lineno", function.lineno),
            f"{name}() never calls engine.dispose(): after a disconnect the pool keeps "
            "handing out dead connections",
        )
    if decorator is None:
        sleeps = [c for c in inside if call_name(c) == "sleep"]
        if sleeps:
            evidence.append(f"backoff sleep between attempts (line {sleeps[0].lineno})")
        else:
            finding(
                NO_BACKOFF,
                getattr(loops[0], "lineno", function.lineno),
                f"{name}() retries without sleeping: all attempts are spent within milliseconds",
            )
    return findings, evidence


def _source(module: PyModule, node: ast.AST) -> str:
    flat = module.segment(node, 61)
    return flat if len(flat) <= 60 else flat[:59] + "…"


def check_calls(module: PyModule) -> list[Finding]:
    """``retry-connection-reused`` at call sites: a connection passed to a retry function."""
    findings: list[Finding] = []
    for call in module.index.calls:
        if not module.is_retry_call(call):
            continue
        # names bound to a connection (``with engine.begin() as conn``) in the call's scope
        connections = module.index.scope(call).connections
        values = [*call.args, *(k.value for k in call.keywords)]
        for value in values:
            if isinstance(value, ast.Name) and (
                value.id in connections or value.id in _CONNECTION_NAMES
            ):
                findings.append(
                    Finding(
                        CONNECTION_REUSED,
                        module.path,
                        call.lineno,
                        f"{value.id} is a connection: passing it to {call_name(call)}() makes every "
                        "attempt run on that same connection, dead or not",
                        CONNECTION_REUSED.fix,
                        _source(module, call),
                    )
                )
                break
    return findings
