"""One host during a stage: gather facts, converge operations, record changes.

``converge(ops)`` is one phase: the facts of every operation in one round
trip, a pure decision per operation, then (unless planning) the scripts of
every changing operation in a second round trip that stops at the first
failure. Stages call it once per phase where later facts depend on earlier
changes (e.g. directories on a file system that is mounted in the phase
before).

Facts are kept until the host is written to: a stage can fetch the facts of
several phases in one round trip (``facts(facts_of(...))``); a phase that
changed something makes the next one read afresh.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from cubeinstall.redaction import redact
from cubeinstall.remote import shell
from cubeinstall.remote.errors import HostError, Refused
from cubeinstall.remote.facts import Fact
from cubeinstall.remote.operations import Operation, Outcome
from cubeinstall.stages.base import Change

if TYPE_CHECKING:  # paramiko is imported only where a connection is made
    from cubeinstall.remote.ssh import Connection

_TAIL = 2000  # characters of a failed step's output quoted in the error


def facts_of(operations: Iterable[Operation]) -> list[Fact]:
    """Every fact the operations need (to fetch several phases' facts at once)."""
    return [fact for op in operations for fact in op.facts()]


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
        missing = [fact for fact in unique if fact not in self._known]
        if missing:
            sections = [shell.Section(str(index), fact.script) for index, fact in enumerate(missing)]
            script, marker = shell.batch(sections)
            result = self.connection.run(script)
            outputs = shell.split_batch(result.stdout, marker, sections)
            if len(outputs) != len(sections):
                raise self.fail(f"reading host facts failed (exit {result.exit_code}): "
                                f"{redact(result.stderr.strip()[-_TAIL:]) or 'no output'}")
            for index, fact in enumerate(missing):
                self._known[fact] = fact.parse(*outputs[str(index)])
        return {fact: self._known[fact] for fact in unique}

    def fact(self, fact: Fact) -> Any:
        return self.facts([fact])[fact]

    # -- operations ------------------------------------------------------------------------

    def converge(self, operations: Iterable[Operation]) -> list[Outcome]:
        operations = list(operations)
        values = self.facts(facts_of(operations))
        outcomes = [self.decide(op, values) for op in operations]
        changing = [o for o in outcomes if o.changed]
        notes = self._apply(changing) if self.write and changing else {}
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

    def _apply(self, outcomes: list[Outcome]) -> dict[str, str]:
        """Run the scripts; returns what each printed on success (e.g. its backup path)."""
        sections = [shell.Section(str(index), o.script) for index, o in enumerate(outcomes)]
        script, marker = shell.batch(sections, apply=True)
        self._known.clear()  # whatever happens next, the host may have changed
        result = self.connection.run(script)
        outputs = shell.split_batch(result.stdout, marker, sections)
        for index, outcome in enumerate(outcomes):
            output, code = outputs.get(str(index), (result.stderr, result.exit_code or 1))
            if code != 0:
                raise self.fail(f"{outcome.action} {outcome.target} failed (exit {code}): "
                                f"{redact(output.strip()[-_TAIL:]) or 'no output'}")
        return {o.target: outputs[str(i)][0].strip() for i, o in enumerate(outcomes)}

    def check(self, what: str, script: str, hint: str | None = None) -> str:
        """Run a verification (writes nothing lasting); fail the host if it fails."""
        result = self.connection.run(script)
        if not result.ok:
            output = (result.stdout + result.stderr).strip()[-_TAIL:]
            raise self.fail(f"{what} failed: {redact(output) or f'exit {result.exit_code}'}", hint)
        return result.stdout
