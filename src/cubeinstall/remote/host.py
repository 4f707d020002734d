"""One host during a stage: gather facts, converge operations, record changes.

``converge(ops)`` is one phase: the facts of every operation in one round
trip, a pure decision per operation, then (unless planning) the scripts of
every changing operation in a second round trip that stops at the first
failure. Stages call it once per phase where later facts depend on earlier
changes (e.g. directories on a file system that is mounted in the phase
before).

Facts are kept until the host is written to: a stage can fetch the facts of
several phases in one round trip (``facts(facts_of(...))``); a phase that
changed something makes the next one read afresh — in the same round trip
as its changes when it names them (``converge(ops, then=facts)``). Each
round trip is an SSH channel, a shell and (for other users) a sudo on the
host, so a stage that finds nothing to change makes one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from cubeinstall.core.change import Change
from cubeinstall.core.redaction import redact
from cubeinstall.remote import shell
from cubeinstall.remote.errors import HostError, Refused
from cubeinstall.remote.facts import Fact
from cubeinstall.remote.operations import Operation, Outcome
from cubeinstall.remote.reading import reading

if TYPE_CHECKING:  # paramiko is imported only where a connection is made
    from cubeinstall.remote.ssh import Connection

_TAIL = 2000  # characters of a failed step's output quoted in the error


def facts_of(operations: Iterable[Operation]) -> list[Fact]:
    """Every fact the operations need (to fetch several phases' facts at once)."""
    return [fact for op in operations for fact in op.facts()]


def steps_of(outcomes: list[Outcome]) -> list[tuple[list[Outcome], str]]:
    """The scripts to run, in order: batchable outcomes in a row with the same command
    (e.g. directories made by ``install -d``) become one command with all operands."""
    steps: list[tuple[list[Outcome], str]] = []
    for outcome in outcomes:
        previous = steps[-1][0][-1] if steps else None
        if outcome.batchable and previous and previous.batchable and \
                previous.batchable[0] == outcome.batchable[0]:
            steps[-1][0].append(outcome)
        else:
            steps.append(([outcome], outcome.script))
    return [(done, script if len(done) == 1 else
             f"{done[0].batchable[0]} -- {' '.join(shell.q(o.batchable[1]) for o in done)}")
            for done, script in steps]


class Host:
    def __init__(self, name: str, connection: Connection, write: bool):
        self.name = name
        self.connection = connection
        self.write = write
        self.changes: list[Change] = []
        self.warnings: list[str] = []
        self._known: dict[Fact, Any] = {}  # facts read since the last write

    @property
    def label(self) -> str:
        return self.connection.target.label

    def fail(self, message: str, hint: str | None = None) -> HostError:
        return HostError(self.label, message, hint)

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    # -- facts ------------------------------------------------------------------------

    def facts(self, facts: Iterable[Fact]) -> dict[Fact, Any]:
        """The facts' values; those not known since the last write in one round trip."""
        unique = list(dict.fromkeys(facts))
        missing = reading(fact for fact in unique if fact not in self._known)
        if missing.groups:
            sections = missing.sections
            script, marker = shell.batch(sections)
            result = self.connection.run(script)
            values = missing.values(shell.split_batch(result.stdout, marker, sections))
            if values is None:
                raise self.fail(f"reading host facts failed (exit {result.exit_code}): "
                                f"{redact(result.stderr.strip()[-_TAIL:]) or 'no output'}")
            self._known.update(values)
        return {fact: self._known[fact] for fact in unique}

    def fact(self, fact: Fact) -> Any:
        return self.facts([fact])[fact]

    # -- operations ------------------------------------------------------------------------

    def converge(self, operations: Iterable[Operation], then: Iterable[Fact] = ()) -> list[Outcome]:
        """One phase; ``then``: facts a later phase needs, read right after the changes
        (in the same round trip) when there are changes."""
        operations = list(operations)
        values = self.facts(facts_of(operations))
        outcomes = [self.decide(op, values) for op in operations]
        changing = [o for o in outcomes if o.changed]
        notes = self._apply(changing, list(then)) if self.write and changing else {}
        for outcome in outcomes:
            detail = "; ".join(filter(None, [outcome.detail, notes.get(outcome.target, "")]))
            self.changes.append(Change(f"{self.name}:{outcome.target}", outcome.action,
                                       detail, outcome.diff))
        return outcomes

    def decide(self, operation: Operation, facts: dict[Fact, Any]) -> Outcome:
        """The operation's verdict on these facts; a refusal fails this host."""
        try:
            return operation.decide(facts)
        except Refused as exc:
            raise self.fail(exc.message, exc.hint) from None

    def _apply(self, outcomes: list[Outcome], then: list[Fact]) -> dict[str, str]:
        """Run the scripts, then read ``then``; returns what each script printed on
        success (e.g. its backup path)."""
        steps = steps_of(outcomes)
        sections = [shell.Section(str(index), script) for index, (_, script) in enumerate(steps)]
        after = reading(then)
        script, marker = shell.batch(sections, apply=True, then=after.sections)
        self._known.clear()  # whatever happens next, the host may have changed
        result = self.connection.run(script)
        outputs = shell.split_batch(result.stdout, marker, [*sections, *after.sections])
        notes = {}
        for index, (done, _) in enumerate(steps):
            output, code = outputs.get(str(index), (result.stderr, result.exit_code or 1))
            if code != 0:
                what = ", ".join(f"{o.action} {o.target}" for o in done)
                raise self.fail(f"{what} failed (exit {code}): "
                                f"{redact(output.strip()[-_TAIL:]) or 'no output'}")
            notes.update((o.target, output.strip()) for o in done)
        self._known.update(after.values(outputs) or {})
        return notes

    def check(self, what: str, script: str, hint: str | None = None) -> str:
        """Run a verification (writes nothing lasting); fail the host if it fails."""
        return self._execute(what, script, hint)

    def change(self, what: str, script: str, hint: str | None = None) -> str:
        """Run a script that changes the host: only on a host opened for writing."""
        if not self.write:
            raise RuntimeError(f"{self.name}: {what!r} changes the host, which was opened read-only")
        self._known.clear()
        return self._execute(what, script, hint)

    def _execute(self, what: str, script: str, hint: str | None) -> str:
        result = self.connection.run(script)
        if not result.ok:
            output = (result.stdout + result.stderr).strip()[-_TAIL:]
            raise self.fail(f"{what} failed: {redact(output) or f'exit {result.exit_code}'}", hint)
        return result.stdout
