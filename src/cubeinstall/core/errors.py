"""Typed errors at the boundary of every engine.

Every error a user can see is a CubeError: it names what is wrong (the field,
host, object or server), says what to do next (``hint``), and carries the exit
code the CLI returns. Engines raise these instead of letting raw client
exceptions (kubernetes, paramiko, pymysql, subprocess) escape.
"""

from __future__ import annotations


class ExitCode:
    OK = 0
    STAGE_FAILED = 1
    CONFIG = 2
    PREFLIGHT = 3
    INTERRUPTED = 130


class CubeError(Exception):
    """Base of every error meant for the user."""

    exit_code = ExitCode.STAGE_FAILED

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message

    def with_message(self, message: str) -> CubeError:
        """A copy saying ``message`` instead: the same type, hint, exit code and details."""
        other = type(self).__new__(type(self))
        other.__dict__.update(self.__dict__)
        other.args, other.message = (message,), message
        return other


class ConfigError(CubeError):
    """The site file or the command line is wrong; nothing was changed."""

    exit_code = ExitCode.CONFIG

    def __init__(self, message: str, hint: str | None = None, problems: list[str] | None = None):
        super().__init__(message, hint)
        self.problems = problems or []

    def __str__(self) -> str:
        lines = [self.message, *(f"  - {p}" for p in self.problems)]
        if self.hint:
            lines.append(f"  hint: {self.hint}")
        return "\n".join(lines)


class PreflightError(CubeError):
    exit_code = ExitCode.PREFLIGHT


class StageFailed(CubeError):
    """A stage ran and failed; ``stage`` names it."""

    support_bundle: str | None = None  # path of the file the runner wrote about the failure

    def __init__(self, stage: str, message: str, hint: str | None = None):
        super().__init__(f"stage {stage}: {message}", hint)
        self.stage = stage

    def __str__(self) -> str:
        text = super().__str__()
        return f"{text}\n  support bundle: {self.support_bundle}" if self.support_bundle else text
