"""Facts read in one script: the base class of facts, and how a round trip reads many.

Each fact is a section of a batched script (``shell.batch``) whose output its
parser reads. A fact class marked ``together`` reads all its facts of a round
trip with one section (``read_together``/``parse_together``): one process on
the host instead of one per fact.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from cubeinstall.remote.shell import Section


class Fact:
    """Base: ``script`` prints the fact, ``parse(stdout, exit_code)`` reads it."""

    together: ClassVar[bool] = False  # all facts of the class in a round trip read at once

    @property
    def script(self) -> str:
        return self.read_together([self])

    def parse(self, stdout: str, exit_code: int) -> Any:
        return self.parse_together([self], stdout, exit_code)[0]

    @classmethod
    def read_together(cls, facts: list) -> str:
        """One script printing all of ``facts`` (for classes marked ``together``)."""
        raise NotImplementedError

    @classmethod
    def parse_together(cls, facts: list, stdout: str, exit_code: int) -> list:
        """The value of each of ``facts``, in order, from ``read_together``'s output."""
        raise NotImplementedError


@dataclass(frozen=True)
class Reading:
    """One script's sections that read some facts, and their values from its output."""

    groups: tuple[tuple[Fact, ...], ...]  # facts read by one section

    @property
    def sections(self) -> list[Section]:
        # Keys "fact<n>": distinct from the numbered sections of changes in the same script.
        return [Section(f"fact{index}", type(group[0]).read_together(list(group))
                        if group[0].together else group[0].script)
                for index, group in enumerate(self.groups)]

    def values(self, outputs: dict[str, tuple[str, int]]) -> dict[Fact, Any] | None:
        """Every fact's value; None if a section did not run to its end."""
        found: dict[Fact, Any] = {}
        for index, group in enumerate(self.groups):
            output = outputs.get(f"fact{index}")
            if output is None:
                return None
            parsed = (type(group[0]).parse_together(list(group), *output) if group[0].together
                      else [group[0].parse(*output)])
            found.update(zip(group, parsed))
        return found


def reading(facts: Iterable[Fact]) -> Reading:
    """The facts grouped: one section per fact, or per class for ``together`` classes."""
    groups: dict[Any, list[Fact]] = {}
    for fact in dict.fromkeys(facts):
        groups.setdefault(type(fact) if fact.together else fact, []).append(fact)
    return Reading(tuple(tuple(group) for group in groups.values()))
