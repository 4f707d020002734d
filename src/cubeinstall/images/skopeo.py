"""Running skopeo: credentials in a temporary 0600 auth file, TLS per side, errors classified.

Credentials never appear on a command line (``ps`` shows them to every user): the
target's user/password go into ``auth.json`` inside a private temporary directory,
passed with ``--dest-authfile``/``--authfile`` and deleted when the session ends. The
site's CA file is handed over as ``--dest-cert-dir`` (skopeo reads ``*.crt`` of a
directory, not a file). Failures become SkopeoError with a kind: ``transient``
errors are worth retrying, the others (auth, TLS, missing image) are not.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from cubeinstall.core.errors import CubeError
from cubeinstall.images.registry_client import Endpoint

COPY_TIMEOUT = 3600.0  # one image; GPU notebook images are several GB
_FATAL_MSG = re.compile(r'level=fatal msg="((?:[^"\\]|\\.)*)"')
_KINDS = (  # first match wins; checked on the lower-cased message
    ("auth", ("unauthorized", "authentication required", "denied", "invalid username/password")),
    ("tls", ("x509:", "certificate signed by unknown authority", "certificate is not valid",
             "http response to https client")),
    ("not-found", ("manifest unknown", "name unknown", "not found", "no such file")),
    ("transient", ("connection reset", "timeout", "eof", "toomanyrequests", "too many requests",
                   "503", "502", "504", "500 internal", "connection refused",
                   "temporary failure", "broken pipe")),
)


class SkopeoError(CubeError):
    def __init__(self, message: str, kind: str, hint: str | None = None):
        super().__init__(message, hint)
        self.kind = kind

    @property
    def transient(self) -> bool:
        return self.kind == "transient"


def find_skopeo() -> str:
    binary = shutil.which("skopeo")
    if not binary:
        raise CubeError("skopeo is not installed: it copies the images",
                        hint="install it: apt-get install skopeo (Debian/Ubuntu) "
                             "or dnf install skopeo")
    return binary


def classify(stderr: str) -> tuple[str, str]:
    """(kind, the readable message) of a failed skopeo run."""
    messages = [m.encode().decode("unicode_escape") for m in _FATAL_MSG.findall(stderr)]
    message = messages[-1] if messages else (stderr.strip().splitlines() or ["no output"])[-1]
    lowered = message.lower()
    for kind, needles in _KINDS:
        if any(needle in lowered for needle in needles):
            return kind, message
    return "other", message


@dataclass
class Destination:
    """Command-line options that reach one registry as a push target."""

    endpoint: Endpoint
    authfile: Path | None
    cert_dir: Path | None

    def copy_options(self) -> list[str]:
        options = []
        if self.authfile:
            options.append(f"--dest-authfile={self.authfile}")
        if self.endpoint.insecure:
            options.append("--dest-tls-verify=false")
        elif self.cert_dir:
            options.append(f"--dest-cert-dir={self.cert_dir}")
        return options


@contextmanager
def destination(endpoint: Endpoint) -> Iterator[Destination]:
    """Auth file (0600) and CA directory for ``endpoint``, removed on exit whatever happens."""
    workdir = Path(tempfile.mkdtemp(prefix="cubeinstall-skopeo-"))  # mode 0700
    try:
        authfile = None
        if endpoint.username:
            authfile = workdir / "auth.json"
            pair = f"{endpoint.username}:{endpoint.password or ''}".encode()
            content = {"auths": {endpoint.host: {"auth": base64.b64encode(pair).decode()}}}
            fd = os.open(authfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(content, handle)
        cert_dir = None
        if endpoint.ca_file and not endpoint.insecure:
            cert_dir = workdir / "certs"
            cert_dir.mkdir()
            try:
                shutil.copyfile(endpoint.ca_file, cert_dir / "ca.crt")
            except OSError as exc:
                raise CubeError(
                    f"cannot read the registry CA file {endpoint.ca_file}: {exc.strerror}",
                    hint="fix registry.ca_file in site.yaml") from None
        yield Destination(endpoint, authfile, cert_dir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def source_options(insecure: bool) -> list[str]:
    return ["--src-tls-verify=false"] if insecure else []


def run_copy(binary: str, options: list[str], source: str, target: str,
             timeout: float = COPY_TIMEOUT) -> None:
    """One ``skopeo copy``; raise SkopeoError (with its kind) when it fails."""
    command = [binary, "--insecure-policy", "copy", *options, source, target]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise SkopeoError(f"copy {source} -> {target} took longer than {timeout:.0f} s",
                          "transient") from None
    if result.returncode != 0:
        kind, message = classify(result.stderr)
        raise SkopeoError(f"copy {source} -> {target} failed: {message}", kind,
                          hint=_HINTS.get(kind))


_HINTS = {
    "auth": "check registry.username/password (the user needs push rights on the project)",
    "tls": "set registry.ca_file to the registry's CA, or registry.insecure: true",
    "not-found": "the source image or tag does not exist: check the component version",
}
