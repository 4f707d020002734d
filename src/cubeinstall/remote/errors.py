"""Errors of the node layer. Each names the host (or the file) it is about."""

from __future__ import annotations

from cubeinstall.core.errors import CubeError


class HostError(CubeError):
    """One host could not be reached or an operation failed on it."""

    def __init__(self, host: str, message: str, hint: str | None = None):
        super().__init__(f"{host}: {message}", hint)
        self.host = host


class Refused(CubeError):
    """An operation will not touch what it would damage (invalid JSON, a file where a
    directory belongs, ...). Raised by the pure operations; the host adds its name."""
