"""Real container registries and tiny images for the tests (``-p tests.servers.registry``).

Two Debian ``docker-registry`` (2.8) servers on loopback ports:
- the SOURCE: plain HTTP, anonymous (a stand-in for gcr.io, quay.io, Docker Hub);
- the TARGET: the site's private registry, htpasswd basic auth AND TLS with a
  certificate signed by a throw-away CA, so the site's ``ca_file`` path is used.

Images are built without Docker: an OCI layout with one gzip'd tar layer, a config
and a manifest (or an index of two platforms), pushed with skopeo. Each image's
content is derived from its name, so every image has its own digest. A missing
binary or a server that does not answer fails the test with the reason; nothing skips.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import shutil
import ssl
import subprocess
import tarfile
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.cluster.pki import CertificateAuthority
from tests.cluster.processes import (
    ManagedProcess,
    ProcessError,
    format_tail,
    free_port,
    wait_until,
)

TARGET_USER = "robot-cube"
TARGET_PASSWORD = "s3cret-Registry-pw"  # registered as a Secret by make_site: masked in output
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


@dataclass
class RegistryServer:
    host: str  # 127.0.0.1:PORT, as written in image references
    root: Path
    process: ManagedProcess
    username: str | None = None
    password: str | None = None
    ca_file: Path | None = None
    images: dict[str, str] = field(default_factory=dict)  # ref -> digest

    @property
    def url(self) -> str:
        return ("https://" if self.ca_file else "http://") + self.host

    def stop(self) -> None:
        self.process.stop()


def require_tools() -> dict[str, str]:
    tools = {name: shutil.which(name) for name in ("docker-registry", "skopeo", "htpasswd")}
    missing = [name for name, path in tools.items() if not path]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: apt-get install docker-registry skopeo "
                    "apache2-utils", pytrace=False)
    return tools


def write_tls(directory: Path, addresses: tuple[str, ...] = ("127.0.0.1",)) -> tuple[Path, Path, Path]:
    """(ca.crt, server.crt, server.key) for localhost and ``addresses``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = CertificateAuthority("cubeinstall-test-registry-ca")
    leaf = ca.issue("registry", dns_names=("localhost",), ip_addresses=addresses, server=True)
    paths = directory / "ca.crt", directory / "server.crt", directory / "server.key"
    for path, data in zip(paths, (ca.cert_pem, leaf.cert_pem, leaf.key_pem)):
        path.write_bytes(data)
    paths[2].chmod(0o600)
    return paths


def start_registry(workdir: Path, *, auth: tuple[str, str] | None = None,
                   tls: tuple[Path, Path, Path] | None = None,
                   address: str = "127.0.0.1") -> RegistryServer:
    """``address``: where it listens (containerd and docker trust any loopback registry,
    so a test of what makes them trust one listens elsewhere)."""
    tools = require_tools()
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(workdir / "data")},
                    "delete": {"enabled": True}},
        "http": {"addr": f"{address}:{port}"},
    }
    if tls:
        config["http"]["tls"] = {"certificate": str(tls[1]), "key": str(tls[2])}
    if auth:
        hashed = subprocess.run([tools["htpasswd"], "-iBn", auth[0]], input=auth[1], text=True,
                                capture_output=True, check=True).stdout.strip()
        (workdir / "htpasswd").write_text(hashed + "\n")
        config["auth"] = {"htpasswd": {"realm": "cubeinstall-test",
                                       "path": str(workdir / "htpasswd")}}
    config_path = workdir / "config.yml"
    config_path.write_text(json.dumps(config))  # JSON is YAML
    process = ManagedProcess("docker-registry", [tools["docker-registry"], "serve",
                                                 str(config_path)], workdir / "registry.log")
    process.start()
    server = RegistryServer(f"{address}:{port}", workdir, process, *(auth or (None, None)),
                            ca_file=tls[0] if tls else None)
    try:
        wait_until(lambda: _answers(server), timeout=30, what="docker-registry to answer /v2/",
                   watched=[process], blame=process)
    except ProcessError as exc:
        process.stop()
        pytest.fail(f"docker-registry did not start: {exc}\n"
                    f"{format_tail('registry', workdir / 'registry.log')}", pytrace=False)
    return server


def _answers(server: RegistryServer) -> bool:
    context = ssl.create_default_context(cafile=str(server.ca_file)) if server.ca_file else None
    try:
        with urllib.request.urlopen(server.url + "/v2/", timeout=2, context=context):
            return True
    except urllib.error.HTTPError as exc:
        return exc.code == 401
    except OSError:
        return False


# --- tiny images ----------------------------------------------------------------------


def _blob(layout: Path, data: bytes, media_type: str) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}


def _image_manifest(layout: Path, content: str, arch: str) -> dict:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        data = content.encode()
        info = tarfile.TarInfo("hello.txt")
        info.size, info.mtime, info.mode = len(data), 0, 0o644
        tar.addfile(info, io.BytesIO(data))
    layer_tar = raw.getvalue()
    layer = _blob(layout, gzip.compress(layer_tar, mtime=0),
                  "application/vnd.oci.image.layer.v1.tar+gzip")
    config = _blob(layout, json.dumps({
        "architecture": arch, "os": "linux", "config": {"Cmd": ["/hello"]},
        "rootfs": {"type": "layers",
                   "diff_ids": ["sha256:" + hashlib.sha256(layer_tar).hexdigest()]},
    }, sort_keys=True).encode(), "application/vnd.oci.image.config.v1+json")
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config,
                "layers": [layer]}
    return _blob(layout, json.dumps(manifest, sort_keys=True).encode(), OCI_MANIFEST)


def build_image(layout: Path, content: str, platforms: tuple[str, ...] = ("amd64",)) -> str:
    """An OCI layout at ``layout`` with one image tagged "img"; return its manifest digest."""
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    descriptors = []
    for arch in platforms:
        descriptor = _image_manifest(layout, f"{content} ({arch})", arch)
        descriptor["platform"] = {"architecture": arch, "os": "linux"}
        descriptors.append(descriptor)
    if len(descriptors) == 1:
        top = {k: v for k, v in descriptors[0].items() if k != "platform"}
    else:
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors}
        top = _blob(layout, json.dumps(index, sort_keys=True).encode(), OCI_INDEX)
    top["annotations"] = {"org.opencontainers.image.ref.name": "img"}
    (layout / "index.json").write_text(json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [top]}))
    return top["digest"]


def push_image(layout: Path, registry: RegistryServer, reference_path: str) -> None:
    """Push layout's "img" to ``registry``/``reference_path`` (repository:tag), digests kept."""
    options = ["--dest-tls-verify=false"]  # the tests trust their own servers
    if registry.username:
        authfile = layout / "auth.json"  # credentials never on a command line, tests included
        pair = base64.b64encode(f"{registry.username}:{registry.password}".encode()).decode()
        authfile.write_text(json.dumps({"auths": {registry.host: {"auth": pair}}}))
        options.append(f"--dest-authfile={authfile}")
    command = ["skopeo", "--insecure-policy", "copy", "--multi-arch=all", "--preserve-digests",
               *options, f"oci:{layout}:img", f"docker://{registry.host}/{reference_path}"]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        pytest.fail(f"pushing test image {reference_path} failed: {result.stderr}", pytrace=False)


def seed_images(registry: RegistryServer, workdir: Path, paths: list[str],
                multi_arch: tuple[str, ...] = ()) -> dict[str, str]:
    """Build and push one distinct image per "repository:tag"; return reference -> digest."""

    def one(path: str) -> tuple[str, str]:
        layout = workdir / hashlib.sha256(path.encode()).hexdigest()[:16]
        platforms = ("amd64", "arm64") if path in multi_arch else ("amd64",)
        digest = build_image(layout, f"image {path}", platforms)
        push_image(layout, registry, path)
        return f"{registry.host}/{path}", digest

    with ThreadPoolExecutor(max_workers=8) as pool:
        return dict(pool.map(one, paths))


def site_data(target: RegistryServer | None, **registry: object) -> dict:
    """A minimal valid site (as data) whose registry is ``target``; kwargs override fields."""
    data: dict = {
        "site": "registry-test", "domain": "cube.example.com",
        "nodes": [{"name": "node1", "address": "10.0.0.11",
                   "roles": ["cpu", "mysql", "redis", "monitoring", "logging", "kubeflow",
                             "kubeflow-dashboard", "istio"]}],
        "storage": {"type": "local"}, "gateway": {"expose": "NodePort"},
        "mysql": {"password": "mysql-test-pw"}, "redis": {"password": "redis-test-pw"},
    }
    if target is not None:
        data["registry"] = {"host": target.host, "project": "cube-studio",
                            "username": target.username, "password": target.password,
                            "ca_file": str(target.ca_file) if target.ca_file else None,
                            **registry}
    return data


def make_site(target: RegistryServer | None, **registry: object):
    from cubeinstall.site.model import Site

    return Site.model_validate(site_data(target, **registry))


# --- fixtures ---------------------------------------------------------------------------

SOURCE_IMAGES = [
    "ml-pipeline/api-server:1.0.4",
    "volcanosh/vc-scheduler:v1.15.1",
    "library/mysql:8.0.32",
    "prometheus-operator/prometheus-config-reloader:v0.93.0",
]
MULTI_ARCH = ("volcanosh/vc-scheduler:v1.15.1",)


@pytest.fixture(scope="module")
def images_upstream_cache(tmp_path_factory):
    """A content-addressed upstream cache ($CUBEINSTALL_CACHE) holding every file of
    shared/upstream, so that rendering the example site (which reads upstream manifests)
    works offline. Stands in for `cubeinstall bundle fetch` in the image inventory tests."""
    from tests.helpers import SHARED

    root = tmp_path_factory.mktemp("upstream-cache")
    store = root / "upstream" / "sha256"
    store.mkdir(parents=True)
    for path in (SHARED / "upstream").rglob("*"):
        if path.is_file():
            shutil.copyfile(path, store / hashlib.sha256(path.read_bytes()).hexdigest())
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CUBEINSTALL_CACHE", str(root))
        yield root


@pytest.fixture(scope="session")
def registry_tls(tmp_path_factory) -> tuple[Path, Path, Path]:
    return write_tls(tmp_path_factory.mktemp("registry-tls"))


@pytest.fixture(scope="session")
def source_registry(tmp_path_factory):
    """Anonymous plain-HTTP source, seeded with SOURCE_IMAGES (one multi-arch)."""
    root = tmp_path_factory.mktemp("source-registry")
    server = start_registry(root / "server")
    server.images = seed_images(server, root / "layouts", SOURCE_IMAGES, MULTI_ARCH)
    yield server
    server.stop()


@pytest.fixture
def target_registry(tmp_path, registry_tls):
    """A fresh private registry per test: htpasswd auth + TLS signed by a test CA."""
    server = start_registry(tmp_path / "target", auth=(TARGET_USER, TARGET_PASSWORD),
                            tls=registry_tls)
    yield server
    server.stop()
