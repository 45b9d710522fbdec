"""Flask signals for monitoring: before and after each migration, and at the end of a run.

Sent (with the Flask app as sender, like Flask's own signals) by
:meth:`SafeMigrate.upgrade <flask_safe_migrate.extension.SafeMigrate.upgrade>`,
by boot-time auto-migrate and by ``flask safe-migrate run``; not by
``python -m flask_safe_migrate run``, which has no app. Connect with
blinker, which Flask depends on::

    from flask_safe_migrate import signals

    @signals.migration_applied.connect_via(app)
    def report(sender, version, name, outcome, bind, **extra):
        statsd.timing("migrations.duration", outcome.duration_ms)

Keyword arguments:

* ``migration_started``: ``version``, ``name``, ``bind``;
* ``migration_applied``: ``version``, ``name``, ``outcome`` (a
  :class:`~flask_safe_migrate.runner.Outcome`; ``outcome.state`` is
  ``already_applied`` when another instance applied it meanwhile), ``bind``;
* ``migration_failed``: ``version``, ``name``, ``error`` (the exception), ``bind``;
* ``run_finished``: ``outcomes`` (a tuple), ``error`` (``None`` on success),
  ``duration_ms``, ``bind``; sent once per run, failed or not, even when
  there was nothing to apply.

``flask safe-migrate rollback`` sends the mirror images, with the same
keyword arguments (``outcome`` is a :class:`~flask_safe_migrate.rollback.Reverted`;
``outcome.state`` is ``already_reverted`` when another instance did it):

* ``migration_reverting``: ``version``, ``name``, ``bind``;
* ``migration_reverted``: ``version``, ``name``, ``outcome``, ``bind``;
* ``migration_revert_failed``: ``version``, ``name``, ``error``, ``bind``;
* ``rollback_finished``: ``outcomes``, ``error``, ``duration_ms``, ``bind``.

A receiver that raises is logged and ignored: monitoring must never stop a
migration half-way or turn an applied one into a reported failure.
"""

from __future__ import annotations

import contextlib
import time
import typing as t

from blinker import Namespace

from .log import logger

if t.TYPE_CHECKING:
    from blinker import NamedSignal

    from .rollback import Reverted
    from .runner import Event
    from .runner import Outcome

_signals = Namespace()

migration_started: NamedSignal = _signals.signal("safe-migrate-migration-started")
migration_applied: NamedSignal = _signals.signal("safe-migrate-migration-applied")
migration_failed: NamedSignal = _signals.signal("safe-migrate-migration-failed")
run_finished: NamedSignal = _signals.signal("safe-migrate-run-finished")
migration_reverting: NamedSignal = _signals.signal("safe-migrate-migration-reverting")
migration_reverted: NamedSignal = _signals.signal("safe-migrate-migration-reverted")
migration_revert_failed: NamedSignal = _signals.signal("safe-migrate-migration-revert-failed")
rollback_finished: NamedSignal = _signals.signal("safe-migrate-rollback-finished")


def _send(signal: NamedSignal, sender: t.Any, **kwargs: t.Any) -> None:
    try:
        signal.send(sender, **kwargs)
    except Exception:
        logger.exception(
            "a receiver of %s raised; ignored (the migration run is not affected)",
            signal.name,
            extra={"safe_migrate_event": "signal_receiver_failed", "signal": signal.name},
        )


@contextlib.contextmanager
def signalling(
    sender: t.Any,
    on_event: t.Callable[[Event], None] | None = None,
    *,
    bind: str | None = None,
) -> t.Iterator[t.Callable[[Event], None]]:
    """Send the signals around one run; yields the ``on_event`` callback to pass to it.

    ``on_event`` (if any) still receives every event, after the signal for it.
    """
    in_flight: list[Event] = []
    outcomes: list[Outcome] = []
    started = time.monotonic()

    def relay(event: Event) -> None:
        if event.kind == "applying":
            in_flight[:] = [event]
            _send(migration_started, sender, version=event.version, name=event.name, bind=bind)
        elif event.kind in ("applied", "already_applied") and event.outcome is not None:
            in_flight.clear()
            outcomes.append(event.outcome)
            _send(
                migration_applied,
                sender,
                version=event.version,
                name=event.name,
                outcome=event.outcome,
                bind=bind,
            )
        if on_event is not None:
            on_event(event)

    def finished(error: BaseException | None) -> None:
        _send(
            run_finished,
            sender,
            outcomes=tuple(outcomes),
            error=error,
            duration_ms=int((time.monotonic() - started) * 1000),
            bind=bind,
        )

    try:
        yield relay
    except BaseException as exc:
        if in_flight:
            event = in_flight[0]
            _send(
                migration_failed,
                sender,
                version=event.version,
                name=event.name,
                error=exc,
                bind=bind,
            )
        finished(exc)
        raise
    finished(None)


@contextlib.contextmanager
def rollback_signalling(
    sender: t.Any,
    on_event: t.Callable[[Event], None] | None = None,
    *,
    bind: str | None = None,
) -> t.Iterator[tuple[t.Callable[[Event], None], t.Callable[[Reverted], None]]]:
    """Send the rollback signals around one rollback.

    Yields ``(on_event, on_reverted)`` to pass to :func:`~.rollback.rollback`;
    ``on_event`` (if any) still receives every event, after the signal for it.
    """
    in_flight: list[Event] = []
    outcomes: list[Reverted] = []
    started = time.monotonic()

    def relay(event: Event) -> None:
        if event.kind == "reverting":
            in_flight[:] = [event]
            _send(migration_reverting, sender, version=event.version, name=event.name, bind=bind)
        if on_event is not None:
            on_event(event)

    def reverted(outcome: Reverted) -> None:
        in_flight.clear()
        outcomes.append(outcome)
        _send(
            migration_reverted,
            sender,
            version=outcome.version,
            name=outcome.name,
            outcome=outcome,
            bind=bind,
        )

    def finished(error: BaseException | None) -> None:
        _send(
            rollback_finished,
            sender,
            outcomes=tuple(outcomes),
            error=error,
            duration_ms=int((time.monotonic() - started) * 1000),
            bind=bind,
        )

    try:
        yield relay, reverted
    except BaseException as exc:
        if in_flight:
            event = in_flight[0]
            _send(
                migration_revert_failed,
                sender,
                version=event.version,
                name=event.name,
                error=exc,
                bind=bind,
            )
        finished(exc)
        raise
    finished(None)
