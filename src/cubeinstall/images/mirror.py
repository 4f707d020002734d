"""Mirror the site's images into its private registry with skopeo, registry to registry.

Order of work: check access to the target once (a wrong password or an untrusted
certificate stops here, before any copy), ask the manifest digest of every image
(``status.check``), then copy only the missing or outdated ones, ``parallel`` at a
time, retrying transient failures with exponential backoff. Every image finishes
with an ``image`` event; the run ends with a summary table.

Multi-arch: copies use ``--multi-arch=all`` (skopeo's ``--all``). The default
(``system``) would copy only the installer machine's platform and push a different,
single-platform manifest: the index digest would change (breaking ``@sha256``
pins and the skip-by-digest check on every later run) and arm64 nodes, common
beside amd64 GPU servers, could not pull. Copying every platform costs bytes
once; the digest check makes every later run free. Images pinned by digest are
copied with ``--preserve-digests`` so skopeo fails rather than convert them.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable

from cubeinstall.core.errors import CubeError
from cubeinstall.images import skopeo
from cubeinstall.images.inventory import ImageUse
from cubeinstall.images.registry_client import RegistryClient
from cubeinstall.images.status import (
    ImageStatus,
    SourceClients,
    check,
    digest_of,
    target_endpoint,
)
from cubeinstall.render import naming

if TYPE_CHECKING:
    from cubeinstall.core.output import Output
    from cubeinstall.site.model import Site


@dataclass(frozen=True)
class MirrorSettings:
    parallel: int = 4  # concurrent skopeo copies
    attempts: int = 3  # per image, for transient errors only
    backoff: float = 2.0  # seconds before the 2nd attempt, doubled each time
    insecure_sources: frozenset[str] = frozenset()  # besides loopback registries


@dataclass
class ImageResult:
    source: str
    target: str
    action: str  # copied | present | failed
    digest: str | None = None
    seconds: float = 0.0
    attempts: int = 0
    error: str = ""
    replaced: bool = False  # the target had another digest under this name


@dataclass
class MirrorReport:
    results: list[ImageResult] = field(default_factory=list)

    def by_action(self, action: str) -> list[ImageResult]:
        return [r for r in self.results if r.action == action]

    @property
    def failed(self) -> list[ImageResult]:
        return self.by_action("failed")


def mirror(site: "Site", uses: Iterable[ImageUse], out: "Output",
           settings: MirrorSettings = MirrorSettings()) -> MirrorReport:
    """Copy every image the target lacks; never raises for one image, see report.failed."""
    if site.registry is None:
        raise CubeError("no registry in site.yaml: nothing to mirror into",
                        hint="add a registry: section (host, project, credentials)")
    endpoint = target_endpoint(site.registry)
    target = RegistryClient(endpoint)
    target.ping()
    sources = SourceClients(settings.insecure_sources)
    statuses = check(uses, target, sources)
    report = MirrorReport([_present(s) for s in statuses if not s.needs_copy])
    for status in statuses:
        if status.state == "present-unchecked":
            out.warn(f"{status.use.target} is present; its source could not be compared "
                     f"({status.note})", image=status.use.source)
    to_copy = [s for s in statuses if s.needs_copy]
    out.info(f"{len(statuses) - len(to_copy)} of {len(statuses)} images already in "
             f"{endpoint.host}; {len(to_copy)} to copy", present=len(statuses) - len(to_copy),
             to_copy=len(to_copy))
    if to_copy:
        binary = skopeo.find_skopeo()
        counter = Counter(len(to_copy))
        with skopeo.destination(endpoint) as dest, \
                ThreadPoolExecutor(max_workers=max(1, settings.parallel)) as pool:
            copied = pool.map(lambda s: _copy_one(s, binary, dest, target, sources, settings,
                                                  out, counter), to_copy)
            report.results.extend(copied)
    report.results.sort(key=lambda r: r.source)
    summarize(report, out, "images mirrored into " + endpoint.host)
    return report


def _present(status: ImageStatus) -> ImageResult:
    return ImageResult(status.use.source, status.use.target, "present", status.target_digest)


class Counter:
    """Progress position "[i/n]" shared by the copy threads."""

    def __init__(self, total: int):
        self.total, self.done, self._lock = total, 0, threading.Lock()

    def next(self) -> str:
        with self._lock:
            self.done += 1
            return f"[{self.done}/{self.total}]"


def _copy_one(status: ImageStatus, binary: str, dest: skopeo.Destination,
              target: RegistryClient, sources: SourceClients, settings: MirrorSettings,
              out: "Output", counter: Counter) -> ImageResult:
    use = status.use
    source_ref = naming.parse(use.source)
    options = ["--multi-arch=all", *dest.copy_options(),
               *skopeo.source_options(sources.insecure(source_ref.registry))]
    if source_ref.digest:
        options.append("--preserve-digests")
    result = copy_with_retries(binary, options, "docker://" + source_ref.pull_reference, use,
                               settings, out)
    if result.action == "copied":
        result.digest = digest_of(target, use.target)
        result.replaced = status.state == "outdated"
        if status.source_digest and result.digest != status.source_digest:
            out.warn(f"{use.target}: digest {result.digest} differs from the source's "
                     f"{status.source_digest} (the manifest was converted)", image=use.source)
    report_image(result, out, counter)
    return result


def copy_with_retries(binary: str, options: list[str], source: str, use: ImageUse,
                      settings: MirrorSettings, out: "Output",
                      destination: str | None = None) -> ImageResult:
    """skopeo copy of ``source`` to ``destination`` (default: the private name of ``use``);
    transient errors retried with exponential backoff."""
    destination = destination or "docker://" + push_reference(use.target)
    result = ImageResult(use.source, use.target, "failed")
    started = time.monotonic()
    delay = settings.backoff
    for attempt in range(1, settings.attempts + 1):
        result.attempts = attempt
        try:
            skopeo.run_copy(binary, options, source, destination)
            result.action = "copied"
            break
        except skopeo.SkopeoError as exc:
            result.error = exc.message
            if not exc.transient or attempt == settings.attempts:
                break
            out.debug(f"retrying {use.source} in {delay:.1f} s: {exc.message}")
            time.sleep(delay)
            delay *= 2
    result.seconds = round(time.monotonic() - started, 2)
    return result


def report_image(result: ImageResult, out: "Output", counter: Counter) -> None:
    if result.action == "copied":
        line = f"copied {result.source} -> {result.target} ({result.seconds:.1f} s)"
    else:
        line = f"FAILED {result.source} -> {result.target}: {result.error}"
    out.event("image", action=result.action, source=result.source, target=result.target,
              digest=result.digest, seconds=result.seconds, attempts=result.attempts,
              error=result.error, message=f"{counter.next()} {line}")


def push_reference(target: str) -> str:
    """Where to push: by tag when there is one (a digest beside it only pins the pull)."""
    ref = naming.parse(target)
    return f"{ref.name}:{ref.tag}" if ref.tag else ref.pull_reference


def summarize(report: MirrorReport, out: "Output", title: str) -> None:
    rows = [(r.source, r.target, r.action, (r.digest or "")[:19],
             f"{r.seconds:.1f}" if r.seconds else "") for r in report.results]
    out.table(title, ("image", "private name", "result", "digest", "seconds"), rows)
    counts = {a: len(report.by_action(a)) for a in ("copied", "present", "failed")}
    out.event("images-summary", **counts,
              message=", ".join(f"{n} {a}" for a, n in counts.items()))


def failure(report: MirrorReport) -> str:
    """One line per failed image, for the stage's error."""
    return "; ".join(f"{r.source}: {r.error}" for r in report.failed)
