"""run/schedule.py: units run at once as far as their dependencies, resources and the limit allow."""

from __future__ import annotations

import io
import threading
import time

import pytest

from cubeinstall.run.schedule import Unit, run_units


class Recorder:
    """Work that records when each unit runs and how many run at once."""

    def __init__(self, fail: tuple[str, ...] = (), hold: float = 0.05,
                 meet: tuple[str, ...] = ()):
        self.fail, self.hold = fail, hold
        # units that must be running at the same moment: each waits for the others
        self.meeting = threading.Barrier(len(meet), timeout=10) if meet else None
        self.meet = meet
        self.order: list[str] = []
        self.running: set[str] = set()
        self.together: list[frozenset[str]] = []
        self._lock = threading.Lock()

    def __call__(self, unit: Unit) -> None:
        with self._lock:
            self.order.append(unit.name)
            self.running.add(unit.name)
            self.together.append(frozenset(self.running))
        if unit.name in self.meet:
            self.meeting.wait()  # BrokenBarrierError if they never run together
        time.sleep(self.hold)
        with self._lock:
            self.running.discard(unit.name)
        if unit.name in self.fail:
            raise RuntimeError(f"{unit.name} broke")

    def ran_beside(self, a: str, b: str) -> bool:
        return any({a, b} <= group for group in self.together)


DIAMOND = [Unit("base"), Unit("left", frozenset({"base"})), Unit("right", frozenset({"base"})),
           Unit("top", frozenset({"left", "right"}))]


def test_independent_units_run_at_once_after_what_they_need():
    work = Recorder(meet=("left", "right"))
    outcome = run_units(DIAMOND, work, limit=4)
    assert work.ran_beside("left", "right")
    assert work.order[0] == "base" and work.order[-1] == "top"
    assert sorted(outcome.done) == ["base", "left", "right", "top"] and not outcome.failed


def test_a_failure_blocks_what_needs_it_not_its_siblings():
    work = Recorder(fail=("left",))
    outcome = run_units(DIAMOND, work, limit=4)
    assert set(outcome.failed) == {"left"}
    assert "right" in outcome.done
    assert outcome.blocked == {"top": "left"}
    assert "top" not in work.order


def test_blocking_is_transitive_and_names_the_root_cause():
    units = [Unit("a"), Unit("b", frozenset({"a"})), Unit("c", frozenset({"b"})), Unit("d")]
    outcome = run_units(units, Recorder(fail=("a",)), limit=2)
    assert outcome.blocked == {"b": "a", "c": "a"}
    assert outcome.done == ["d"]


def test_one_job_runs_in_order_in_this_thread_and_stops_at_the_first_failure():
    threads = []
    work = Recorder(fail=("left",), hold=0)

    def record_thread(unit: Unit) -> None:
        threads.append(threading.current_thread())
        work(unit)

    outcome = run_units(DIAMOND, record_thread, limit=1, keep_going=False)
    assert work.order == ["base", "left"]
    assert set(threads) == {threading.main_thread()}
    assert outcome.blocked == {"right": "left", "top": "left"}


def test_units_holding_the_same_resource_never_run_together():
    units = [Unit("shell-1", holds="shells"), Unit("shell-2", holds="shells"), Unit("free")]
    work = Recorder(meet=("shell-1", "free"))
    run_units(units, work, limit=3)
    assert not work.ran_beside("shell-1", "shell-2")
    assert work.ran_beside("shell-1", "free")


def test_the_limit_bounds_how_many_run_at_once():
    work = Recorder(meet=("u0", "u1"))
    run_units([Unit(f"u{i}") for i in range(6)], work, limit=2)
    assert max(len(group) for group in work.together) == 2


def test_an_interrupt_is_not_a_units_failure():
    def interrupted(unit: Unit) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_units(DIAMOND, interrupted, limit=2)


def test_an_order_that_points_forward_is_refused():
    with pytest.raises(ValueError, match="not before it"):
        run_units([Unit("a", frozenset({"b"})), Unit("b")], Recorder(), limit=2)


def test_the_runs_error_names_the_failed_stages_and_what_they_kept_from_running():
    from cubeinstall.core.context import RunContext
    from cubeinstall.core.errors import ConfigError, StageFailed
    from cubeinstall.core.output import Output
    from cubeinstall.run.runner import _run_failed
    from cubeinstall.run.schedule import Outcome
    from cubeinstall.site.loader import load_site
    from tests.helpers import EXAMPLE_SITE

    ctx = RunContext(site=load_site(EXAMPLE_SITE), out=Output(json_mode=True, stream=io.StringIO()))
    istio = StageFailed("istio", "no CRDs")
    one = Outcome(failed={"istio": istio}, blocked={"gateway": "istio"})
    error = _run_failed(ctx, one, name_not_run=True)
    assert error.message == "stage istio: no CRDs (not run, as they need it: gateway)"
    assert str(error).startswith(error.message) and isinstance(error, StageFailed)
    assert istio.message == "stage istio: no CRDs"  # the stage's own error stays its own
    assert ctx.out.events[-1]["stages"] == ["gateway"]
    two = Outcome(failed={"istio": StageFailed("istio", "no CRDs"),
                          "volcano": StageFailed("volcano", "conflict")})
    assert _run_failed(ctx, two, name_not_run=True).message == (
        "2 stages failed: stage istio: no CRDs; stage volcano: conflict")
    site_error = ConfigError("components.volcano.namespace: not honoured")
    assert _run_failed(ctx, Outcome(failed={"istio": StageFailed("istio", "x"),
                                            "volcano": site_error}), True) is site_error
