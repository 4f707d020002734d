"""Which images the site registry already has: one manifest request per image.

``check`` compares each target's manifest digest with its source's (no source
request at all when the source is pinned by digest) and is what ``plan``, the
mirror's skip decision and ``images verify`` share. Requests run in parallel:
on a real network each takes a round trip or two.
"""

from __future__ import annotations

import ipaddress
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Literal

from cubeinstall.core.errors import CubeError
from cubeinstall.images.inventory import ImageUse
from cubeinstall.images.registry_client import (
    Endpoint,
    RegistryClient,
    RegistryError,
    RegistryUnreachable,
)
from cubeinstall.render import naming

if TYPE_CHECKING:
    from cubeinstall.site.model import Registry, Site

State = Literal["missing", "present", "outdated", "present-unchecked"]
CHECK_PARALLEL = 8  # manifest requests at a time: round trips overlap, handshakes stay few


@dataclass(frozen=True)
class ImageStatus:
    use: ImageUse
    state: State
    target_digest: str | None = None
    source_digest: str | None = None
    note: str = ""  # why the source could not be compared

    @property
    def needs_copy(self) -> bool:
        return self.state in ("missing", "outdated")


def target_endpoint(registry: "Registry") -> Endpoint:
    password = registry.password.reveal() if registry.password else None
    return Endpoint(registry.host.lower(), registry.username, password, registry.ca_file,
                    registry.insecure)


def is_loopback(host: str) -> bool:
    name = host[1:host.find("]")] if host.startswith("[") else host.split(":", 1)[0]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class SourceClients:
    """One anonymous client per source registry; loopback and listed hosts are insecure
    (Docker's own default treats 127.0.0.0/8 as an insecure registry)."""

    def __init__(self, insecure_hosts: Iterable[str] = ()):
        self.insecure_hosts = frozenset(h.lower() for h in insecure_hosts)
        self._clients: dict[str, RegistryClient] = {}
        self._unreachable: dict[str, RegistryUnreachable] = {}
        self._first_answer: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def insecure(self, host: str) -> bool:
        return host in self.insecure_hosts or is_loopback(host)

    def get(self, host: str) -> RegistryClient:
        with self._lock:
            if host not in self._clients:
                endpoint = Endpoint(host, insecure=self.insecure(host))
                self._clients[host] = RegistryClient(endpoint, timeout=20, attempts=2)
            return self._clients[host]

    def digest(self, reference: str) -> str | None:
        """The source's manifest digest. A registry that did not answer at all is not asked
        again in this run: an air-gapped re-run pays one failure per registry, not a
        retried failure per image. Until a registry's first question is answered the
        others for it wait (the checks run in parallel: each would pay the failure)."""
        host = naming.parse(reference).registry
        with self._lock:
            first = host not in self._first_answer
            answered = self._first_answer.setdefault(host, threading.Event())
        if not first:
            answered.wait()
        try:
            with self._lock:
                known = self._unreachable.get(host)
            if known is not None:
                raise RegistryUnreachable(known.message, known.hint)
            try:
                return digest_of(self.get(host), reference)
            except RegistryUnreachable as exc:
                with self._lock:
                    self._unreachable.setdefault(host, exc)
                raise
        finally:
            if first:
                answered.set()


def digest_of(client: RegistryClient, reference: str) -> str | None:
    ref = naming.parse(reference)
    return client.manifest_digest(ref.repository, ref.digest or ref.tag or "latest")


def check(uses: Iterable[ImageUse], target: RegistryClient, sources: SourceClients,
          parallel: int = CHECK_PARALLEL) -> list[ImageStatus]:
    """Status of every image to copy, in the order given. Target errors propagate."""
    wanted = [use for use in uses if use.needs_copy]
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        return list(pool.map(lambda use: _check_one(use, target, sources), wanted))


def _check_one(use: ImageUse, target: RegistryClient, sources: SourceClients) -> ImageStatus:
    target_digest = digest_of(target, use.target)
    if target_digest is None:
        return ImageStatus(use, "missing")
    pinned = naming.parse(use.source).digest
    if pinned:
        state = "present" if pinned == target_digest else "outdated"
        return ImageStatus(use, state, target_digest, pinned)
    try:
        source_digest = sources.digest(use.source)
    except RegistryError as exc:
        # Air-gapped re-runs: the target has the tag, the source cannot be asked.
        return ImageStatus(use, "present-unchecked", target_digest, note=exc.message)
    if source_digest is None:
        return ImageStatus(use, "present-unchecked", target_digest,
                           note=f"source {use.source} not found")
    state = "present" if source_digest == target_digest else "outdated"
    return ImageStatus(use, state, target_digest, source_digest)


def missing_targets(uses: Iterable[ImageUse], target: RegistryClient,
                    parallel: int = CHECK_PARALLEL) -> list[ImageUse]:
    """Images whose private name the site registry does not serve (manifest HEAD each)."""
    wanted = [use for use in uses if use.needs_copy]
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        digests = list(pool.map(lambda use: digest_of(target, use.target), wanted))
    return [use for use, digest in zip(wanted, digests) if digest is None]


def missing_in_registry(site: "Site", uses: Iterable[ImageUse],
                        parallel: int = CHECK_PARALLEL) -> list[ImageUse]:
    """``images verify``: access checked once, then which private names are not served."""
    if site.registry is None:
        raise CubeError("no registry in site.yaml: nothing to verify",
                        hint="add a registry: section (host, project, credentials)")
    target = RegistryClient(target_endpoint(site.registry))
    target.ping()
    return missing_targets(uses, target, parallel)
