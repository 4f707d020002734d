"""Image references: parsing, and the private name of an image in the site registry.

Parsing follows the distribution reference grammar that Docker and containerd use:
the first path component is a registry only when it contains ``.`` or ``:`` or is
``localhost``; otherwise the image is on Docker Hub (``docker.io``), and a one-part
Docker Hub path lives under ``library/``. A reference without tag and digest means
``:latest``.

Private names (``Registry.naming``), always ``<host>/<project>/<path><tag/digest>``:

- ``flatten`` (the seed's convention, PLATFORM-FACTS item 4): the whole source name
  becomes ONE path segment, ``/`` (and a registry port's ``:``) replaced by ``-``:
  ``gcr.io/ml-pipeline/api-server:1.0.4`` ->
  ``<host>/<project>/gcr.io-ml-pipeline-api-server:1.0.4``.
- ``keep-path``: the source's repository path is kept, its registry host dropped:
  ``gcr.io/ml-pipeline/api-server:1.0.4`` -> ``<host>/<project>/ml-pipeline/api-server:1.0.4``
  (so a component "hub" such as istio's becomes ``<host>/<project>/istio``).

Docker Hub images, in both modes, use their familiar path, the way people write them
and the way the seed's image lists name them: ``docker.io/library/mysql:8.0.32`` and
``mysql:8.0.32`` both become ``<host>/<project>/mysql:8.0.32``;
``docker.io/volcanosh/vc-scheduler:v1.15.1`` becomes ``volcanosh-vc-scheduler`` (flatten)
or ``volcanosh/vc-scheduler`` (keep-path). Tags and digests are kept as they are. An
image already in the site registry keeps its name (the rewrite is idempotent). Two
sources that would get the same private name are refused by the inventory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cubeinstall.site.model import Registry

DOCKER_HUB = "docker.io"
_DOCKER_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io"}
_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-fA-F0-9]{32,}$")
_HOST = re.compile(r"^[A-Za-z0-9.-]+(?::[0-9]+)?$|^\[[0-9a-fA-F:]+\](?::[0-9]+)?$")


class InvalidReference(ValueError):
    """Not an image reference; the message quotes it."""


@dataclass(frozen=True)
class ImageRef:
    registry: str  # lower-case host[:port]; "docker.io" for Docker Hub
    repository: str  # full path in the registry ("library/mysql" on Docker Hub)
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    @property
    def suffix(self) -> str:
        """":tag", "@digest", both, or ":latest" when the reference had neither."""
        if self.tag is None and self.digest is None:
            return ":latest"
        return (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")

    @property
    def familiar_path(self) -> str:
        """The path as people write it: Docker Hub's ``library/`` dropped."""
        if self.registry == DOCKER_HUB and self.repository.startswith("library/"):
            return self.repository[len("library/"):]
        return self.repository

    @property
    def pull_reference(self) -> str:
        """What to fetch: by digest when there is one (a tag beside it is informative only)."""
        if self.digest:
            return f"{self.name}@{self.digest}"
        return f"{self.name}:{self.tag or 'latest'}"

    def __str__(self) -> str:
        return self.name + self.suffix


def parse(reference: str) -> ImageRef:
    """Parse and normalise one image reference; InvalidReference names it when it is not one."""
    text = reference.strip()
    if not text or any(ch.isspace() for ch in text) or "://" in text:
        raise InvalidReference(f"not an image reference: {reference!r}")
    name, _, digest = text.partition("@")
    if digest and not _DIGEST.match(digest):
        raise InvalidReference(f"bad digest in image reference {reference!r}")
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        registry, path = first.lower(), rest
        if not _HOST.match(registry):
            raise InvalidReference(f"bad registry host {first!r} in image reference {reference!r}")
    else:
        registry, path = DOCKER_HUB, name
    if registry in _DOCKER_HUB_ALIASES:
        registry = DOCKER_HUB
    tag = None
    last_slash = path.rfind("/")
    if ":" in path[last_slash + 1:]:
        path, tag = path.rsplit(":", 1)
        if not _TAG.match(tag):
            raise InvalidReference(f"bad tag {tag!r} in image reference {reference!r}")
    if registry == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    if not path or not all(_COMPONENT.match(part) for part in path.split("/")):
        raise InvalidReference(
            f"bad repository path {path!r} in image reference {reference!r} "
            "(lower-case letters, digits and . _ - separators)")
    return ImageRef(registry, path, tag, digest or None)


def in_registry(ref: ImageRef, registry: "Registry") -> bool:
    """Already served by the site registry (any project): never renamed, never copied."""
    return ref.registry == registry.host.lower()


def private_path(ref: ImageRef, naming: str) -> str:
    """The repository path under the site project, per naming mode (see module doc)."""
    if naming == "keep-path":
        return ref.familiar_path
    if naming != "flatten":
        raise ValueError(f"unknown naming mode {naming!r}")
    if ref.registry == DOCKER_HUB:
        source = ref.familiar_path
    else:
        source = f"{ref.registry.replace(':', '-')}/{ref.repository}"
    return source.replace("/", "-")


def target_ref(reference: str | ImageRef, registry: "Registry") -> ImageRef:
    ref = parse(reference) if isinstance(reference, str) else reference
    if in_registry(ref, registry):
        return ref
    project = registry.project.strip("/")
    return ImageRef(registry.host.lower(), f"{project}/{private_path(ref, registry.naming)}",
                    ref.tag, ref.digest)


def target_name(reference: str | ImageRef, registry: "Registry") -> str:
    """The full private reference an image is pulled by once it is mirrored."""
    return str(target_ref(reference, registry))
