"""Run units of work at the same time where their dependencies allow.

A unit starts once every unit it comes ``after`` has finished ok, no other running
unit ``holds`` the same resource, and fewer than ``limit`` units run. A unit that
fails blocks every unit that needs it, directly or not; the others go on. Units
start in the order given (the registry's order) whenever several are ready. A limit
of 1 runs them one by one in that order, in the calling thread; ``keep_going=False``
stops at the first failure (every unit not started yet counts as blocked by it).

Workers are daemon threads: Ctrl-C (or a signal) ends the process at once, as it
does for a serial run; what was in flight is recorded ``running`` in the journal and
runs again next time.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Unit:
    name: str
    after: frozenset[str] = frozenset()  # units that must finish ok first
    holds: str | None = None  # a resource no two running units share


@dataclass
class Outcome:
    done: list[str] = field(default_factory=list)  # finished ok, in finishing order
    failed: dict[str, BaseException] = field(default_factory=dict)
    blocked: dict[str, str] = field(default_factory=dict)  # unit -> the failed unit it needed


def run_units(units: Sequence[Unit], work: Callable[[Unit], None], limit: int,
              keep_going: bool = True) -> Outcome:
    """Run ``work(unit)`` for every unit; returns what finished, failed and was blocked."""
    _check(units)
    outcome = Outcome()
    pending = list(units)
    running: dict[str, Unit] = {}
    finished: queue.Queue[tuple[str, BaseException | None]] = queue.Queue()

    def worker(unit: Unit) -> None:
        try:
            work(unit)
        except BaseException as exc:  # handed to the scheduling thread, which decides
            finished.put((unit.name, exc))
        else:
            finished.put((unit.name, None))

    while pending or running:
        if outcome.failed and not keep_going:
            cause = next(iter(outcome.failed))
            outcome.blocked.update((unit.name, cause) for unit in pending)
            pending.clear()
        for unit in _block_dependents(pending, outcome):
            pending.remove(unit)
        for unit in _ready(pending, running, outcome, max(limit, 1) - len(running)):
            pending.remove(unit)
            running[unit.name] = unit
            if limit <= 1:
                worker(unit)  # one at a time: in this thread, as a plain loop would
            else:
                threading.Thread(target=worker, args=(unit,), daemon=True,
                                 name=f"unit {unit.name}").start()
        if not running:
            break
        name, error = finished.get()
        del running[name]
        if error is not None and not isinstance(error, Exception):
            raise error  # Ctrl-C, exit: not a unit's failure
        if error is None:
            outcome.done.append(name)
        else:
            outcome.failed[name] = error
    return outcome


def _check(units: Sequence[Unit]) -> None:
    names = [unit.name for unit in units]
    if len(set(names)) != len(names):
        raise ValueError(f"unit names repeat: {names}")
    for position, unit in enumerate(units):
        later = set(names[position:])
        if unit.after & later:  # also rules out cycles: every edge points backwards
            raise ValueError(f"{unit.name} comes after {sorted(unit.after & later)}, "
                             "which are not before it in the order")


def _block_dependents(pending: list[Unit], outcome: Outcome) -> list[Unit]:
    """Pending units that need a failed or blocked unit (they can never start)."""
    unrunnable = {**{name: name for name in outcome.failed}, **outcome.blocked}
    blocked = []
    for unit in pending:  # in order: a unit blocked here blocks the later ones too
        cause = next((unrunnable[name] for name in sorted(unit.after) if name in unrunnable), None)
        if cause is not None:
            outcome.blocked[unit.name] = cause
            unrunnable[unit.name] = cause
            blocked.append(unit)
    return blocked


def _ready(pending: list[Unit], running: dict[str, Unit], outcome: Outcome,
           free: int) -> list[Unit]:
    held = {unit.holds for unit in running.values() if unit.holds}
    done = set(outcome.done)
    ready = []
    for unit in pending:
        if len(ready) >= free:
            break
        if unit.after <= done and (unit.holds is None or unit.holds not in held):
            ready.append(unit)
            if unit.holds:
                held.add(unit.holds)
    return ready
