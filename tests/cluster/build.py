#!/usr/bin/env python3
"""Build, or reuse, every binary the local test control plane runs.

    python tests/cluster/build.py            # build what is missing or stale
    python tests/cluster/build.py --check    # exit 1 if a build is needed
    python tests/cluster/build.py --force    # rebuild everything
    python tests/cluster/build.py sync-gomod v1.36.4   # bump Kubernetes

Why a build at all: there is no Docker here (so no kind) and no download
site for Kubernetes server binaries, only the Go module proxy.  So the
control plane is compiled from the ``k8s.io/kubernetes`` module through
the wrapper module in ``tests/cluster/k8s`` (its go.mod pins the version
and replaces every staging module; see gomod.py), etcd 3.6 from the wrapper
module in ``tests/cluster/etcd`` and kwok is ``go install``ed.  The optional
real node (realnode.py) adds the kubelet (in the same ``go build`` as the
control plane), containerd 2.x with its runc shim and ctr (wrapper module
``tests/cluster/containerd``) and the pause binary every pod sandbox runs,
compiled with ``gcc -static`` from the kubernetes module's
``build/pause/linux/pause.c`` and packed as an OCI image archive.

Why not Debian's etcd-server 3.4: the cluster starts with it, but 3.4 has
no watch progress requests, so the apiserver refuses the WatchList streams
kwok's informers open; every kwok watch then ends at once and kwok falls
back to re-listing with exponential backoff (up to ~30 s between lists),
i.e. pods become Ready late and at random.  CUBEINSTALL_ETCD=/path/to/etcd
still points the control plane at any other etcd binary.

Binaries live outside the repo, keyed by Kubernetes version:
``~/.cache/cubeinstall/testcluster/<version>/{bin,stages}``.  A stamp
file records a hash of each part's inputs (go.mod, go.sum and build
flags of its wrapper module; kwok's version and stage list).  A part
whose stamp matches is reused, so a warm run takes a fraction of a
second; a stale part is rebuilt (with a warm Go build cache that is
mostly linking: seconds).

Standard library only: this runs before anything is pip-installed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
K8S_MODULE = HERE / "k8s"
ETCD_MODULE = HERE / "etcd"
ETCD_PACKAGE = "go.etcd.io/etcd/server/v3"
CONTAINERD_MODULE = HERE / "containerd"
CONTAINERD_COMMANDS = ("containerd", "containerd-shim-runc-v2", "ctr")
#: No btrfs/devmapper/zfs snapshotters: they need C headers and are never used here.
CONTAINERD_TAGS = "no_btrfs no_devmapper no_zfs"
#: The pause image every pod sandbox of the real node runs (containerd pins it).
PAUSE_TAG = "3.10.2"
PAUSE_IMAGE = f"registry.k8s.io/pause:{PAUSE_TAG}"
PAUSE_CFLAGS = ("-Os", "-Wall", "-Werror", "-static", f"-DVERSION=v{PAUSE_TAG}-cubeinstall")

K8S_COMMANDS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl",
                "kubelet")
#: Parts, in build order; the control plane needs the first three, a real node all.
PARTS = ("kubernetes", "etcd", "kwok", "containerd", "pause")
CONTROL_PLANE_PARTS = ("kubernetes", "etcd", "kwok")
KWOK_VERSION = "v0.8.0"
KWOK_PACKAGE = "sigs.k8s.io/kwok/cmd/kwok"
#: Stage files copied out of the kwok module: target name -> path under
#: kustomize/stage/.  kwok v0.8.0 has no built-in stages; these are the
#: "fast" ones kwokctl uses (no artificial delays), plus the lease-based
#: heartbeat so the node lifecycle controller keeps the nodes Ready.
KWOK_STAGES = {
    "node-initialize.yaml": "node/fast/node-initialize.yaml",
    "node-heartbeat-with-lease.yaml": "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "pod-ready.yaml": "pod/fast/pod-ready.yaml",
    "pod-complete.yaml": "pod/fast/pod-complete.yaml",
    "pod-delete.yaml": "pod/fast/pod-delete.yaml",
}
ETCD_MIN = (3, 4)


class BuildError(RuntimeError):
    """The binaries are missing, stale, or could not be built."""


def cache_root() -> Path:
    """Root of the binary cache (CUBEINSTALL_TESTCLUSTER_CACHE overrides)."""
    override = os.environ.get("CUBEINSTALL_TESTCLUSTER_CACHE")
    if override:
        return Path(override).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cubeinstall" / "testcluster"


def kubernetes_version(gomod: Path = K8S_MODULE / "go.mod") -> str:
    """The k8s.io/kubernetes version the wrapper module requires."""
    match = re.search(r"^\s*k8s\.io/kubernetes\s+(v\d+\.\d+\.\d+\S*)", gomod.read_text(), re.M)
    if not match:
        raise BuildError(f"{gomod} does not require k8s.io/kubernetes")
    return match.group(1)


def _ldflags(version: str) -> str:
    major, minor = re.match(r"v(\d+)\.(\d+)", version).groups()
    stamps = {
        "k8s.io/component-base/version.gitVersion": version,
        "k8s.io/component-base/version.gitMajor": major,
        "k8s.io/component-base/version.gitMinor": minor,
        "k8s.io/client-go/pkg/version.gitVersion": version,
        "k8s.io/component-base/version.gitTreeState": "clean",
    }
    return " ".join(["-s", "-w"] + [f"-X {k}={v}" for k, v in stamps.items()])


@dataclass(frozen=True)
class Toolset:
    """Where the control plane's binaries and kwok stage files are."""

    version: str
    root: Path
    #: An etcd chosen with CUBEINSTALL_ETCD; None means the one built here.
    etcd: Path | None = None

    @property
    def bin_dir(self) -> Path:
        return self.root / "bin"

    @property
    def stages_dir(self) -> Path:
        return self.root / "stages"

    @property
    def stamp_file(self) -> Path:
        return self.root / "stamp.json"

    def binary(self, name: str) -> Path:
        if name == "etcd" and self.etcd is not None:
            return self.etcd
        return self.bin_dir / name

    def stage_files(self) -> list[Path]:
        return [self.stages_dir / name for name in KWOK_STAGES]

    @property
    def images_dir(self) -> Path:
        return self.root / "images"

    @property
    def pause_archive(self) -> Path:
        """OCI image archive of PAUSE_IMAGE (``ctr images import`` reads it)."""
        return self.images_dir / "pause.oci.tar"


def etcd_override() -> Path | None:
    """An etcd binary named by CUBEINSTALL_ETCD (then none is built)."""
    candidate = os.environ.get("CUBEINSTALL_ETCD")
    return Path(candidate).expanduser() if candidate else None


def etcd_version(etcd: Path) -> tuple[int, ...]:
    try:
        out = subprocess.run(
            [str(etcd), "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise BuildError(f"cannot run {etcd} --version: {exc}") from exc
    match = re.search(r"etcd Version:\s*(\d+)\.(\d+)\.(\d+)", out)
    if not match:
        raise BuildError(f"cannot read the version of {etcd} from: {out!r}")
    return tuple(int(x) for x in match.groups())


def toolset(version: str | None = None) -> Toolset:
    """Paths only; nothing is checked or built."""
    version = version or kubernetes_version()
    return Toolset(version=version, root=cache_root() / version, etcd=etcd_override())


# --- stamps ---------------------------------------------------------------


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()


def _k8s_inputs(version: str) -> str:
    return _digest(
        (K8S_MODULE / "go.mod").read_bytes(),
        (K8S_MODULE / "go.sum").read_bytes(),
        _ldflags(version).encode(),
        " ".join(K8S_COMMANDS).encode(),
    )


def _etcd_inputs() -> str:
    return _digest(
        (ETCD_MODULE / "go.mod").read_bytes(), (ETCD_MODULE / "go.sum").read_bytes(), b"-s -w"
    )


def containerd_version() -> str:
    """The containerd version the wrapper module requires (e.g. v2.4.2)."""
    gomod = (CONTAINERD_MODULE / "go.mod").read_text()
    match = re.search(r"^\s*github\.com/containerd/containerd/v2\s+(v\S+)", gomod, re.M)
    if not match:
        raise BuildError(f"{CONTAINERD_MODULE / 'go.mod'} does not require containerd/v2")
    return match.group(1)


def _containerd_ldflags() -> str:
    # Else `containerd --version` (and the node's containerRuntimeVersion) says 2.x+unknown.
    return f"-s -w -X github.com/containerd/containerd/v2/version.Version={containerd_version()}"


def _containerd_inputs() -> str:
    return _digest(
        (CONTAINERD_MODULE / "go.mod").read_bytes(),
        (CONTAINERD_MODULE / "go.sum").read_bytes(),
        CONTAINERD_TAGS.encode(),
        " ".join(CONTAINERD_COMMANDS).encode(),
        _containerd_ldflags().encode(),
    )


def _pause_inputs(version: str) -> str:
    return _digest(version.encode(), " ".join(PAUSE_CFLAGS).encode(), PAUSE_IMAGE.encode(),
                   (HERE / "oci.py").read_bytes())


def _kwok_inputs() -> str:
    return _digest(KWOK_VERSION.encode(), json.dumps(KWOK_STAGES, sort_keys=True).encode())


def _read_stamp(tools: Toolset) -> dict:
    try:
        return json.loads(tools.stamp_file.read_text())
    except (OSError, ValueError):
        return {}


def _write_stamp(tools: Toolset, part: str, value: str | None) -> None:
    stamp = _read_stamp(tools)
    if value is None:
        stamp.pop(part, None)
    else:
        stamp[part] = value
    tools.root.mkdir(parents=True, exist_ok=True)
    tmp = tools.stamp_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(stamp, indent=2, sort_keys=True) + "\n")
    tmp.replace(tools.stamp_file)


def stale_parts(tools: Toolset) -> dict[str, str]:
    """part -> reason, for every part that must be (re)built."""
    stamp = _read_stamp(tools)
    stale: dict[str, str] = {}
    k8s_missing = [c for c in K8S_COMMANDS if not (tools.bin_dir / c).is_file()]
    if k8s_missing:
        stale["kubernetes"] = "missing " + ", ".join(k8s_missing)
    elif stamp.get("kubernetes") != _k8s_inputs(tools.version):
        stale["kubernetes"] = (
            "tests/cluster/k8s/go.mod, go.sum or build flags changed since the last build"
        )
    if tools.etcd is None:
        if not (tools.bin_dir / "etcd").is_file():
            stale["etcd"] = "missing etcd"
        elif stamp.get("etcd") != _etcd_inputs():
            stale["etcd"] = "tests/cluster/etcd/go.mod or go.sum changed since the last build"
    kwok_missing = [
        p.name for p in [tools.bin_dir / "kwok", *tools.stage_files()] if not p.is_file()
    ]
    if kwok_missing:
        stale["kwok"] = "missing " + ", ".join(kwok_missing)
    elif stamp.get("kwok") != _kwok_inputs():
        stale["kwok"] = f"kwok version or stage list changed (want {KWOK_VERSION})"
    containerd_missing = [c for c in CONTAINERD_COMMANDS if not (tools.bin_dir / c).is_file()]
    if containerd_missing:
        stale["containerd"] = "missing " + ", ".join(containerd_missing)
    elif stamp.get("containerd") != _containerd_inputs():
        stale["containerd"] = "tests/cluster/containerd/go.mod, go.sum or build tags changed"
    if not (tools.bin_dir / "pause").is_file() or not tools.pause_archive.is_file():
        stale["pause"] = "missing pause or its image archive"
    elif stamp.get("pause") != _pause_inputs(tools.version):
        stale["pause"] = "pause build flags, image name or oci.py changed"
    return stale


# --- building --------------------------------------------------------------


def _go_env() -> dict[str, str]:
    if shutil.which("go") is None:
        raise BuildError("the Go toolchain is not on PATH (need Go >= 1.26 for Kubernetes 1.36)")
    env = dict(os.environ)
    env.update(GOTOOLCHAIN="local", CGO_ENABLED="0")
    return env


def _run(argv: list[str], *, cwd: Path, env: dict[str, str], what: str) -> None:
    print(f"[testcluster-build] {what}: {' '.join(argv)}", flush=True)
    result = subprocess.run(argv, cwd=cwd, env=env)
    if result.returncode != 0:
        raise BuildError(f"{what} failed (exit {result.returncode}); see the go output above")


def build_kubernetes(tools: Toolset) -> None:
    """One `go build` for all commands so they share the compilation."""
    _write_stamp(tools, "kubernetes", None)
    tools.bin_dir.mkdir(parents=True, exist_ok=True)
    inputs = _k8s_inputs(tools.version)
    argv = _go_build(_ldflags(tools.version), str(tools.bin_dir) + os.sep,
                     [f"k8s.io/kubernetes/cmd/{c}" for c in K8S_COMMANDS])
    _run(argv, cwd=K8S_MODULE, env=_go_env(), what=f"build Kubernetes {tools.version}")
    _write_stamp(tools, "kubernetes", inputs)


def _go_build(ldflags: str, output: str, packages: list[str]) -> list[str]:
    """A reproducible static build (CGO off comes from _go_env)."""
    return ["go", "build", "-trimpath", "-buildvcs=false", "-ldflags", ldflags, "-o", output,
            *packages]


def build_etcd(tools: Toolset) -> None:
    _write_stamp(tools, "etcd", None)
    tools.bin_dir.mkdir(parents=True, exist_ok=True)
    argv = _go_build("-s -w", str(tools.bin_dir / "etcd"), [ETCD_PACKAGE])
    _run(argv, cwd=ETCD_MODULE, env=_go_env(), what="build etcd")
    _write_stamp(tools, "etcd", _etcd_inputs())


def _module_dir(module: str, version: str, env: dict[str, str]) -> Path:
    """Download a module (if needed) and return its directory in GOMODCACHE."""
    result = subprocess.run(
        ["go", "mod", "download", "-json", f"{module}@{version}"],
        cwd=tools_tmp_cwd(),
        env=env,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise BuildError(
            f"go mod download {module}@{version} failed:\n{result.stdout}{result.stderr}"
        )
    return Path(json.loads(result.stdout)["Dir"])


def tools_tmp_cwd() -> Path:
    """A directory outside any Go module, for `go install pkg@version`."""
    path = cache_root()
    path.mkdir(parents=True, exist_ok=True)
    return path


def build_kwok(tools: Toolset) -> None:
    _write_stamp(tools, "kwok", None)
    env = _go_env()
    env["GOBIN"] = str(tools.bin_dir)
    tools.bin_dir.mkdir(parents=True, exist_ok=True)
    _run(
        ["go", "install", "-trimpath", "-ldflags", "-s -w", f"{KWOK_PACKAGE}@{KWOK_VERSION}"],
        cwd=tools_tmp_cwd(),
        env=env,
        what=f"install kwok {KWOK_VERSION}",
    )
    source = _module_dir("sigs.k8s.io/kwok", KWOK_VERSION, env) / "kustomize" / "stage"
    tools.stages_dir.mkdir(parents=True, exist_ok=True)
    for target, rel in KWOK_STAGES.items():
        src = source / rel
        if not src.is_file():
            raise BuildError(
                f"kwok {KWOK_VERSION} module has no stage file {rel} (looked in {source})"
            )
        dst = tools.stages_dir / target
        shutil.copyfile(src, dst)
        dst.chmod(0o644)  # files in GOMODCACHE are read-only
    _write_stamp(tools, "kwok", _kwok_inputs())


def build_containerd(tools: Toolset) -> None:
    """containerd 2.x, its runc shim and ctr: one `go build`, like Kubernetes."""
    _write_stamp(tools, "containerd", None)
    tools.bin_dir.mkdir(parents=True, exist_ok=True)
    argv = _go_build(_containerd_ldflags(), str(tools.bin_dir) + os.sep,
                     [f"github.com/containerd/containerd/v2/cmd/{c}" for c in CONTAINERD_COMMANDS])
    argv[2:2] = ["-tags", CONTAINERD_TAGS]
    _run(argv, cwd=CONTAINERD_MODULE, env=_go_env(), what="build containerd")
    _write_stamp(tools, "containerd", _containerd_inputs())


def build_pause(tools: Toolset) -> None:
    """The pause binary from the pinned kubernetes module's source, and its image."""
    _write_stamp(tools, "pause", None)
    if shutil.which("gcc") is None:
        raise BuildError("gcc is not on PATH (apt-get install gcc libc6-dev): it compiles pause.c")
    source = _module_dir("k8s.io/kubernetes", tools.version, _go_env()) / "build/pause/linux/pause.c"
    if not source.is_file():
        raise BuildError(f"k8s.io/kubernetes@{tools.version} has no {source}")
    tools.bin_dir.mkdir(parents=True, exist_ok=True)
    binary = tools.bin_dir / "pause"
    _run(["gcc", *PAUSE_CFLAGS, "-o", str(binary), str(source)], cwd=tools_tmp_cwd(),
         env=dict(os.environ), what="compile pause")
    sys.path.insert(0, str(HERE))
    import oci  # noqa: PLC0415 - sibling module (this file runs as a script too)

    tools.images_dir.mkdir(parents=True, exist_ok=True)
    oci.write_archive(tools.pause_archive, PAUSE_IMAGE,
                      files={"/pause": (binary.read_bytes(), 0o755)},
                      config={"Entrypoint": ["/pause"], "User": "65535:65535"})
    _write_stamp(tools, "pause", _pause_inputs(tools.version))


def check_etcd_override(tools: Toolset) -> None:
    """A CUBEINSTALL_ETCD binary must exist and be etcd >= 3.4."""
    if tools.etcd is None:
        return
    if not tools.etcd.is_file():
        raise BuildError(f"CUBEINSTALL_ETCD={tools.etcd} does not exist")
    version = etcd_version(tools.etcd)
    if version[:2] < ETCD_MIN:
        raise BuildError(f"{tools.etcd} is etcd {'.'.join(map(str, version))}; need >= 3.4")


def ensure(*, build: bool = True, force: bool = False,
           parts: tuple[str, ...] = PARTS) -> Toolset:
    """Return a Toolset whose ``parts`` are complete, building stale ones if ``build``.

    With ``build=False`` (what the pytest fixture uses) a stale or missing
    part is an error telling the user which command to run: a cold build
    takes half an hour and must not hide inside a test's timeout.
    """
    tools = toolset()
    check_etcd_override(tools)
    stale = {part: why for part, why in stale_parts(tools).items() if part in parts}
    if force:
        stale = {part: "--force" for part in parts}
        if tools.etcd is not None:
            stale.pop("etcd", None)
    if stale and not build:
        reasons = "; ".join(f"{part}: {why}" for part, why in stale.items())
        raise BuildError(
            f"test cluster binaries for Kubernetes {tools.version} are not built ({reasons}). "
            f"Run: python tests/cluster/build.py   (cache: {tools.root})"
        )
    builders = {"kubernetes": build_kubernetes, "etcd": build_etcd, "kwok": build_kwok,
                "containerd": build_containerd, "pause": build_pause}
    for part, why in stale.items():
        print(f"[testcluster-build] {part} needs a build: {why}", flush=True)
        started = time.monotonic()
        builders[part](tools)
        print(f"[testcluster-build] {part} built in {time.monotonic() - started:.0f}s", flush=True)
    return tools


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check", action="store_true", help="only report; exit 1 if a build is needed"
    )
    parser.add_argument("--force", action="store_true", help="rebuild everything")
    sub = parser.add_subparsers(dest="command")
    sync = sub.add_parser(
        "sync-gomod", help="point tests/cluster/k8s/go.mod at another Kubernetes version"
    )
    sync.add_argument("version", help="e.g. v1.36.4")
    args = parser.parse_args(argv)

    if args.command == "sync-gomod":
        sys.path.insert(0, str(HERE))
        import gomod  # noqa: PLC0415 - sibling module, only needed for this command

        gomod.sync(args.version, K8S_MODULE)
        print(f"tests/cluster/k8s now pins Kubernetes {args.version}; run this script to build it")
        return 0

    started = time.monotonic()
    try:
        if args.check:
            tools = toolset()
            check_etcd_override(tools)
            stale = stale_parts(tools)
            for part, why in stale.items():
                print(f"{part}: {why}")
            if stale:
                return 1
        else:
            tools = ensure(force=args.force)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"test cluster binaries ready: Kubernetes {tools.version} in {tools.bin_dir}, "
        f"etcd {tools.binary('etcd')} ({time.monotonic() - started:.2f}s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
