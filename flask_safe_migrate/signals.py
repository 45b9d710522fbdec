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
def _around(
    sender: t.Any,
    on_event: t.Callable[[Event], None] | None,
    bind: str | None,
    *,
    starting: str,
    started: NamedSignal,
    done: NamedSignal,
    failed: NamedSignal,
    finished: NamedSignal,
) -> t.Iterator[tuple[t.Callable[[Event], None], t.Callable[[Outcome | Reverted], None]]]:
    """Send one run's (or rollback's) signals; yields ``(relay, record)``.

    ``relay`` takes every event (an event of kind ``starting`` puts a
    migration in flight and sends ``started``) and passes it on to
    ``on_event``; ``record`` takes each migration's outcome and sends
    ``done``. An exception sends ``failed`` for the migration in flight;
    ``finished`` is sent once, failed or not.
    """
    in_flight: list[Event] = []
    outcomes: list[Outcome | Reverted] = []
    started_at = time.monotonic()

    def relay(event: Event) -> None:
        if event.kind == starting:
            in_flight[:] = [event]
            _send(started, sender, version=event.version, name=event.name, bind=bind)
        if on_event is not None:
            on_event(event)

    def record(outcome: Outcome | Reverted) -> None:
        in_flight.clear()
        outcomes.append(outcome)
        _send(done, sender, version=outcome.version, name=outcome.name, outcome=outcome, bind=bind)

    def finish(error: BaseException | None) -> None:
        _send(
            finished,
            sender,
            outcomes=tuple(outcomes),
            error=error,
            duration_ms=int((time.monotonic() - started_at) * 1000),
            bind=bind,
        )

    try:
        yield relay, record
    except BaseException as exc:
        if in_flight:
            event = in_flight[0]
            _send(failed, sender, version=event.version, name=event.name, error=exc, bind=bind)
        finish(exc)
        raise
    finish(None)


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
    with _around(
        sender,
        on_event,
        bind,
        starting="applying",
        started=migration_started,
        done=migration_applied,
        failed=migration_failed,
        finished=run_finished,
    ) as (relay, record):

        def relay_run(event: Event) -> None:
            # a run reports each outcome on its event
            if event.kind in ("applied", "already_applied") and event.outcome is not None:
                record(event.outcome)
            relay(event)

        yield relay_run


def rollback_signalling(
    sender: t.Any,
    on_event: t.Callable[[Event], None] | None = None,
    *,
    bind: str | None = None,
) -> t.ContextManager[tuple[t.Callable[[Event], None], t.Callable[[Reverted], None]]]:
    """Send the rollback signals around one rollback.

    Yields ``(on_event, on_reverted)`` to pass to :func:`~.rollback.rollback`;
    ``on_event`` (if any) still receives every event, after the signal for it.
    """
    return _around(
        sender,
        on_event,
        bind,
        starting="reverting",
        started=migration_reverting,
        done=migration_reverted,
        failed=migration_revert_failed,
        finished=rollback_finished,
    )
