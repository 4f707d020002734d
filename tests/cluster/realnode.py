"""A real node for the test cluster: kubelet + containerd 2.x + runc + CNI.

kwok nodes only pretend: their pods never run a byte.  A RealNode runs the
kubelet built with the control plane, containerd with its runc shim, Debian's
runc and CNI plugins, so its pods really pull their images, start, answer,
crash and log.  It is a separate machine in all but the kernel:

- its own mount, network and UTS namespaces (``unshare``), entered by every
  node process with ``nsenter``;
- its root is an overlay of ``/`` whose writable layer is a private tmpfs
  (pivot_root into it): /var/lib/kubelet, /var/log/pods, /etc/cni, /run,
  /data/k8s, everything the node writes vanishes with it and the host's files
  are never touched.  containerd's own store is a directory of the node's
  workdir bind-mounted at /var/lib/containerd (its overlayfs snapshots need a
  disk file system, not an overlay);
- the kubelet's kernel tunables (vm.overcommit_memory, kernel.panic, ...)
  are files of the node bind-mounted over /proc/sys inside the namespace: the
  kubelet reads the values it wants and changes nothing on the host;
- networking: a veth pair, the host end ``cireal<N>`` with 203.0.113.(4N+1)/30
  and the node end ``eth0`` with 203.0.113.(4N+2)/30 (TEST-NET-3); the API
  server reaches the kubelet there.  Pods get 198.51.100.0/24 (TEST-NET-2) on
  the node's own bridge; the node has no default route, so no pod can send
  anything off the node.  Before adding anything the host's addresses and
  routes are checked: a range this machine already uses is refused (this
  machine kind's own network is 192.0.2.0/24, TEST-NET-1, with its default
  gateway at 192.0.2.1 -- a node there would have taken the host's gateway).
  The node reaches the API server and the test registries at their usual
  host loopback addresses through nsrelay.py (127.0.0.1 inside the node is
  relayed to 127.0.0.1 on the host, for the listed ports only);
- cgroups (v1 here, cgroupfs driver): the kubelet's ``cgroupRoot`` is a new
  cgroup below the memory cgroup of the test process, created in every
  hierarchy and removed again.

stop() kills every process of the node (containers by their cgroups, the
shims, containerd and the kubelet by their mount namespace), removes the
cgroups, checks that the veth is gone and deletes the containerd store.
``leftovers()`` lists anything of a node still on the host (the tests assert
it is empty after a stop).

Facts this rests on (verified on this machine kind, see issue 19): runc from
Debian (crun fails in cgroup hybrid mode); containerd needs
``restrict_oom_score_adj = true`` (root lacks CAP_SYS_RESOURCE here); the
kubelet needs ``failCgroupV1: false`` and ``failSwapOn: false``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import build
from .pki import CertificateAuthority, write_kubeconfig
from .processes import ManagedProcess, ProcessError, format_tail, pid_alive, wait_until

RELAY = Path(__file__).with_name("nsrelay.py")
NODE_LABEL = "cubeinstall.test/real-node"
#: The default taint: no pod of another test lands on the real node by accident.
REAL_NODE_TAINT = {"key": NODE_LABEL, "value": "true", "effect": "NoSchedule"}
POD_SUBNET = "198.51.100.0/24"  # TEST-NET-2
NODE_LINKS = "203.0.113.0/24"  # TEST-NET-3: one /30 per node (host end .1, node end .2)
CGROUP_FS = Path("/sys/fs/cgroup")
#: What the kubelet wants these to be (setupKernelTunables); see the module doc.
KERNEL_TUNABLES = {
    "vm/overcommit_memory": "1", "vm/panic_on_oom": "0", "kernel/panic": "10",
    "kernel/panic_on_oops": "1", "kernel/keys/root_maxkeys": "1000000",
    "kernel/keys/root_maxbytes": "25000000",
}
REQUIRED = {  # program -> Debian package
    "unshare": "util-linux", "nsenter": "util-linux", "ip": "iproute2",
    "iptables": "iptables", "runc": "runc",
}
CNI_DIR = Path("/usr/lib/cni")  # Debian's containernetworking-plugins
CNI_PLUGINS = ("bridge", "host-local", "portmap", "loopback")
CONTAINERD_SOCKET = "/run/containerd/containerd.sock"
#: What the namespaces' first process ends up running (it holds them open).
HOLDER_ARGV = ["sleep", "infinity"]


class RealNodeError(ProcessError):
    """The real node could not be started (or stopped) as asked."""


@dataclass(frozen=True)
class RealNodeSpec:
    """What the real node is called and what the scheduler sees of it."""

    name: str = "real1"
    labels: Mapping[str, str] = field(default_factory=dict)
    #: Taints as Node spec dicts; the default keeps other tests' pods away.
    taints: tuple[Mapping[str, str], ...] = (REAL_NODE_TAINT,)
    max_pods: int = 30


def require_host() -> None:
    """Everything the node needs from the host, or an error naming the package."""
    problems = []
    if os.geteuid() != 0:
        problems.append("must run as root (namespaces, mounts, cgroups)")
    for program, package in REQUIRED.items():
        if not shutil.which(program):
            problems.append(f"{program} not found (apt-get install {package})")
    missing = [p for p in CNI_PLUGINS if not (CNI_DIR / p).is_file()]
    if missing:
        problems.append(f"CNI plugins {', '.join(missing)} not in {CNI_DIR} "
                        "(apt-get install containernetworking-plugins)")
    if not (CGROUP_FS / "memory").is_dir() and not (CGROUP_FS / "cgroup.controllers").exists():
        problems.append(f"no cgroup file system at {CGROUP_FS}")
    if problems:
        raise RealNodeError("the real node cannot start: " + "; ".join(problems)
                            + " (scripts/install-test-deps installs the packages)")


def _own_cgroup() -> str:
    """This process's memory cgroup (v1; its v2 cgroup if none): the node's cgroups go
    below it, so the pods count against the memory of whoever runs the tests."""
    lines = Path("/proc/self/cgroup").read_text().splitlines()
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return path.rstrip("/")
    for line in lines:
        if line.startswith("0::"):
            return line[3:].rstrip("/")
    return ""


def _hierarchies() -> list[Path]:
    """Mounted cgroup hierarchies (v1 controllers and the unified one)."""
    result = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        parts = line.split()
        if parts[2] in ("cgroup", "cgroup2") and parts[1].startswith(str(CGROUP_FS)):
            result.append(Path(parts[1]))
    return sorted(set(result))


def host_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network this host has an address in or a route to (default excluded),
    and its gateways."""
    networks = []
    addresses = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True,
                               text=True, check=True).stdout
    for match in re.finditer(r"inet (\d+\.\d+\.\d+\.\d+/\d+)", addresses):
        networks.append(ipaddress.ip_interface(match.group(1)).network)
    routes = subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True,
                            text=True, check=True).stdout
    for line in routes.splitlines():
        words = line.split()
        if not words:
            continue
        destination = words[1] if words[0] in ("local", "broadcast", "unicast") else words[0]
        if re.fullmatch(r"\d+\.\d+\.\d+\.\d+(/\d+)?", destination):
            networks.append(ipaddress.ip_network(destination, strict=False))
        if "via" in words:
            networks.append(ipaddress.ip_network(words[words.index("via") + 1] + "/32"))
    return networks


def _free_index() -> int:
    """The first /30 of NODE_LINKS that no address or route of this host touches."""
    used = host_networks()
    pods = ipaddress.ip_network(POD_SUBNET)
    taken = [n for n in used if n.overlaps(pods)]
    if taken:
        raise RealNodeError(f"the real node's pod subnet {POD_SUBNET} overlaps this host's "
                            f"{', '.join(map(str, taken))}: refusing to start")
    for index, link in enumerate(ipaddress.ip_network(NODE_LINKS).subnets(new_prefix=30)):
        if not any(n.overlaps(link) for n in used):
            return index
    raise RealNodeError(f"no /30 of {NODE_LINKS} is free on this host (its networks: "
                        f"{', '.join(map(str, used))})")


def _ns_inode(pid: int, kind: str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/{kind}")
    except OSError:
        return None


def _pids_in_namespace(ns: str, kind: str) -> list[int]:
    me = os.getpid()
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != me and _ns_inode(int(entry.name), kind) == ns:
            pids.append(int(entry.name))
    return pids


CGROUP_NAME = re.compile(r"cubeinstall-.+-(\d+)-\d+")


def sweep_stale_nodes(bin_dir: Path) -> list[str]:
    """Remove what real nodes of dead test runs left (a run killed with SIGKILL: its
    children die with it, but the runc shims, their containers, the node's namespaces
    that they hold and the cgroups stay).  Returns what was removed.

    Stale: a shim whose mount namespace has no holder (``sleep infinity``) left; a
    cgroup ``cubeinstall-<node>-<pid>-<n>`` whose creating process is gone.
    """
    removed = []
    by_ns: dict[str, list[tuple[int, str]]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            ns = os.readlink(entry / "ns" / "mnt")
            exe = os.readlink(entry / "exe")
        except OSError:
            continue
        by_ns.setdefault(ns, []).append(
            (int(entry.name), cmdline[0].decode(errors="replace"), exe))
    for ns, procs in by_ns.items():
        # Only the shims built here (a machine's own containerd is never touched).
        shims = [pid for pid, _, exe in procs if exe == str(bin_dir / "containerd-shim-runc-v2")]
        holders = [pid for pid, argv0, _ in procs if argv0 == HOLDER_ARGV[0]]
        if shims and not holders and ns != _ns_inode(os.getpid(), "mnt"):
            for pid in shims:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            removed.append(f"shims {shims} of a node whose namespaces were abandoned")
    for hierarchy in _hierarchies():
        stale = [Path(d) for d, _, _ in os.walk(hierarchy)
                 if (m := CGROUP_NAME.fullmatch(Path(d).name)) and not pid_alive(int(m.group(1)))]
        for top in stale:
            for directory in sorted((Path(d) for d, _, _ in os.walk(top)),
                                    key=lambda p: len(p.parts), reverse=True):
                for _ in range(50):
                    with contextlib.suppress(OSError):
                        for pid in (directory / "cgroup.procs").read_text().split():
                            with contextlib.suppress(ProcessLookupError):
                                os.kill(int(pid), signal.SIGKILL)
                    try:
                        directory.rmdir()
                        break
                    except FileNotFoundError:
                        break
                    except OSError:
                        time.sleep(0.1)
            removed.append(f"cgroup {top}")
    return removed


def _attachable(state: dict) -> dict:
    """A process state whose argv[0] is what runs (nsenter execs the command after --),
    so ManagedProcess.running() of a re-attached process recognises it."""
    argv = state["argv"]
    if argv and argv[0] == "nsenter" and "--" in argv:
        state = {**state, "argv": argv[argv.index("--") + 1:]}
    elif argv and argv[0] == "unshare":  # the setup script ends with this exec
        state = {**state, "argv": HOLDER_ARGV}
    return state


class RealNode:
    """One real node of a running ControlPlane (see the module doc)."""

    def __init__(self, workdir: Path, spec: RealNodeSpec = RealNodeSpec(), *,
                 tools: build.Toolset, server: str, ca_cert: Path, ca_key: Path,
                 detached: bool = False) -> None:
        self.workdir = Path(workdir)
        self.spec = spec
        self.tools = tools
        self.server = server
        self.ca_cert, self.ca_key = ca_cert, ca_key
        self.detached = detached
        self.index: int | None = None
        self.cgroup_root: str | None = None
        self.created_cgroups: list[str] = []
        self.processes: list[ManagedProcess] = []
        self.timings: dict[str, float] = {}
        self.relayed: list[str] = []
        self._mnt_ns: str | None = None
        self._net_ns: str | None = None

    # --- addresses ----------------------------------------------------------

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def host_interface(self) -> str:
        return f"cireal{self.index}"

    @property
    def link(self) -> ipaddress.IPv4Network:
        return list(ipaddress.ip_network(NODE_LINKS).subnets(new_prefix=30))[self.index]

    @property
    def host_address(self) -> str:
        return str(self.link[1])

    @property
    def address(self) -> str:
        """The node's InternalIP (the API server dials its kubelet there)."""
        return str(self.link[2])

    @property
    def holder(self) -> ManagedProcess:
        return next(p for p in self.processes if p.name == f"{self.name}-namespaces")

    @property
    def root(self) -> Path:
        """The node's file system, seen from the host."""
        return Path(f"/proc/{self.holder.pid}/root")

    def path(self, node_path: str) -> Path:
        return self.root / node_path.lstrip("/")

    def write(self, node_path: str, content: bytes, mode: int = 0o644) -> None:
        target = self.path(node_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        target.chmod(mode)

    def log(self, component: str) -> Path:
        return self.workdir / "logs" / f"{self.name}-{component}.log"

    # --- start ----------------------------------------------------------------

    def start(self, timeout: float = 120.0) -> RealNode:
        started = time.monotonic()
        try:
            self._start(timeout)
        except BaseException as exc:
            tails = self.tails()
            try:
                self.stop()
            except Exception as stop_exc:  # noqa: BLE001 - report both
                tails += f"\n(and stopping it failed: {stop_exc})"
            if isinstance(exc, RealNodeError) or not isinstance(exc, Exception):
                raise
            raise RealNodeError(f"real node {self.name} did not start: {exc}\n{tails}") from exc
        self.timings["total"] = time.monotonic() - started
        return self

    def _start(self, timeout: float) -> None:
        require_host()
        sweep_stale_nodes(self.tools.bin_dir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        for sub in ("root", "state", "containerd", "logs"):
            (self.workdir / sub).mkdir(exist_ok=True)
        self.index = _free_index()
        self._make_cgroups()
        self._write_files()

        t = time.monotonic()
        holder = self._spawn("namespaces", ["unshare", "--mount", "--net", "--uts",
                                            "--propagation", "private",
                                            "bash", str(self.workdir / "setup.sh")])
        wait_until(lambda: self.path("/run/cubeinstall-node-ready").exists(), timeout=30,
                   what=f"the namespaces of real node {self.name}", watched=[holder], blame=holder)
        self._mnt_ns, self._net_ns = _ns_inode(holder.pid, "mnt"), _ns_inode(holder.pid, "net")
        self._network()
        self.timings["namespaces"] = time.monotonic() - t

        port = self.server.rsplit(":", 1)[1]
        self.relay(f"127.0.0.1:{port}")

        t = time.monotonic()
        containerd = self._spawn("containerd", self._in_node(
            str(self.tools.binary("containerd")), "--config", "/etc/containerd/config.toml"))
        wait_until(lambda: self._ctr("version").returncode == 0, timeout=30,
                   what="containerd to answer", watched=[containerd], blame=containerd)
        imported = self._ctr("-n", "k8s.io", "images", "import",
                             str(self.tools.pause_archive))
        if imported.returncode != 0:
            raise containerd.failure(f"ctr images import {self.tools.pause_archive} failed: "
                                     f"{imported.stdout}{imported.stderr}")
        self.timings["containerd"] = time.monotonic() - t

        t = time.monotonic()
        self._spawn("kubelet", self._in_node(*self._kubelet_argv()))
        self.timings["kubelet-spawn"] = time.monotonic() - t

    def wait_ready(self, api: Any, timeout: float, watched: list[ManagedProcess]) -> float:
        from .nodes import unready_nodes

        kubelet = next(p for p in self.processes if p.name == f"{self.name}-kubelet")
        return wait_until(lambda: not unready_nodes(api, [self.name]), timeout=timeout,
                          interval=0.2, what=f"real node {self.name} to be Ready",
                          watched=[*watched, *self.processes], blame=kubelet)

    def _spawn(self, component: str, argv: list[str]) -> ManagedProcess:
        env = dict(os.environ)
        env.pop("KUBECONFIG", None)
        env["NO_PROXY"] = env["no_proxy"] = "*"
        env["PATH"] = f"{self.tools.bin_dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        proc = ManagedProcess(f"{self.name}-{component}", argv, self.log(component), env=env,
                              die_with_parent=not self.detached)
        self.processes.append(proc.start())
        return proc

    def _in_node(self, *argv: str) -> list[str]:
        return ["nsenter", "-t", str(self.holder.pid), "-m", "-n", "-u", "-r", "-w", "--", *argv]

    def _ctr(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(self._in_node(str(self.tools.binary("ctr")), "--address",
                                            CONTAINERD_SOCKET, *args),
                              capture_output=True, text=True, timeout=120, check=False)

    def run(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """A command inside the node's namespaces (e.g. ``ip addr``, ``ctr``)."""
        return subprocess.run(self._in_node(*argv), capture_output=True, text=True,
                              timeout=timeout, check=False)

    def relay(self, address: str) -> None:
        """Make the host's ``127.0.0.1:PORT`` reachable from the node at the same address."""
        if address in self.relayed:
            return
        proc = self._spawn(f"relay-{address.rsplit(':', 1)[1]}", [
            "python3", str(RELAY), "--netns", f"/proc/{self.holder.pid}/ns/net", address])
        wait_until(lambda: "nsrelay: relaying" in proc.log_path.read_text(), timeout=10,
                   what=f"the relay of {address} into real node {self.name}",
                   watched=[proc], blame=proc)
        self.relayed.append(address)

    def trust_registry(self, host: str, ca_file: Path | None = None) -> None:
        """Let the node pull from a test registry at ``host`` (127.0.0.1:PORT):
        relay its port and tell containerd its scheme and CA (hosts.toml)."""
        self.relay(host)
        directory = f"/etc/containerd/certs.d/{host}"
        scheme = "https" if ca_file else "http"
        lines = [f'server = "{scheme}://{host}"', "", f'[host."{scheme}://{host}"]',
                 '  capabilities = ["pull", "resolve"]']
        if ca_file:
            self.write(f"{directory}/ca.crt", Path(ca_file).read_bytes())
            lines.append(f'  ca = "{directory}/ca.crt"')
        self.write(f"{directory}/hosts.toml", ("\n".join(lines) + "\n").encode())

    # --- host side preparation ------------------------------------------------

    def _make_cgroups(self) -> None:
        base = _own_cgroup()
        self.cgroup_root = f"{base}/cubeinstall-{self.name}-{os.getpid()}-{self.index}"
        for hierarchy in _hierarchies():
            path = hierarchy / self.cgroup_root.lstrip("/")
            missing = []
            probe = path
            while not probe.exists():
                missing.append(probe)
                probe = probe.parent
            for directory in reversed(missing):
                directory.mkdir()
                self.created_cgroups.append(str(directory))
                if hierarchy.name == "cpuset":  # a new v1 cpuset starts with no CPU
                    for knob in ("cpuset.cpus", "cpuset.mems"):
                        (directory / knob).write_text((directory.parent / knob).read_text())

    def _write_files(self) -> None:
        w = self.workdir
        files = w / "files"
        files.mkdir(exist_ok=True)
        ca = CertificateAuthority.load(self.ca_cert.read_bytes(), self.ca_key.read_bytes())
        client = ca.issue(f"system:node:{self.name}", organizations=("system:nodes",),
                          client=True)
        write_kubeconfig(files / "kubelet.kubeconfig", server=self.server,
                         ca_pem=ca.cert_pem, client=client, user=f"system:node:{self.name}")
        (files / "ca.crt").write_bytes(ca.cert_pem)
        (files / "kubelet.yaml").write_text(json.dumps(self._kubelet_config(), indent=2))
        (files / "containerd.toml").write_text(self._containerd_config())
        (files / "cni.conflist").write_text(json.dumps(self._cni_config(), indent=2))
        (files / "resolv.conf").write_text("# no DNS on the real test node\n")
        sysctls = w / "files" / "sysctl"
        sysctls.mkdir(exist_ok=True)
        for name, value in KERNEL_TUNABLES.items():
            (sysctls / name.replace("/", ".")).write_text(value + "\n")
        (w / "setup.sh").write_text(self._setup_script())

    def _setup_script(self) -> str:
        """Bash run by ``unshare`` in the node's new namespaces; ends as the holder."""
        q = shlex.quote
        w, r, s = self.workdir, q(str(self.workdir / "root")), q(str(self.workdir / "state"))
        f = self.workdir / "files"
        lines = [
            "set -eu",
            f"hostname {q(self.name)}",
            "ip link set lo up",
            f"mount -t tmpfs -o size=8g,mode=0755 tmpfs {s}",
            f"mkdir {s}/upper {s}/work",
            f"mount -t overlay overlay -o lowerdir=/,upperdir={s}/upper,workdir={s}/work {r}",
            *(f"mount --rbind /{d} {r}/{d}" for d in ("proc", "sys", "dev")),
            f"mount -t tmpfs -o size=1g,mode=0755 tmpfs {r}/run",
            (f"mkdir -p {r}/var/lib/containerd {r}/etc/containerd {r}/etc/cni/net.d "
             f"{r}/var/lib/kubelet {r}/var/log/pods {r}/data {r}/.oldroot"),
            f"mount --bind {q(str(w / 'containerd'))} {r}/var/lib/containerd",
            f"cp {q(str(f / 'containerd.toml'))} {r}/etc/containerd/config.toml",
            f"cp {q(str(f / 'cni.conflist'))} {r}/etc/cni/net.d/10-cubeinstall.conflist",
            f"cp {q(str(f / 'kubelet.yaml'))} {r}/var/lib/kubelet/config.yaml",
            f"cp {q(str(f / 'kubelet.kubeconfig'))} {r}/var/lib/kubelet/kubeconfig",
            f"cp {q(str(f / 'ca.crt'))} {r}/var/lib/kubelet/ca.crt",
            f"cp {q(str(f / 'resolv.conf'))} {r}/var/lib/kubelet/resolv.conf",
            f"echo '127.0.1.1 {self.name}' >> {r}/etc/hosts",
        ]
        for name in KERNEL_TUNABLES:
            source = q(str(f / "sysctl" / name.replace("/", ".")))
            lines.append(f"mount --bind {source} {r}/proc/sys/{name}")
        lines += [
            f"cd {r}",
            "pivot_root . .oldroot",
            "cd /",
            "umount -l /.oldroot",
            "touch /run/cubeinstall-node-ready",
            "exec " + " ".join(HOLDER_ARGV),
        ]
        return "\n".join(lines) + "\n"

    def _network(self) -> None:
        holder = str(self.holder.pid)
        steps = [
            ["ip", "link", "add", self.host_interface, "type", "veth", "peer", "name", "eth0",
             "netns", holder],
            ["ip", "addr", "add", f"{self.host_address}/30", "dev", self.host_interface],
            ["ip", "link", "set", self.host_interface, "up"],
            ["nsenter", "-t", holder, "-n", "ip", "addr", "add", f"{self.address}/30",
             "dev", "eth0"],
            ["nsenter", "-t", holder, "-n", "ip", "link", "set", "eth0", "up"],
        ]
        for argv in steps:
            result = subprocess.run(argv, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise RealNodeError(f"real node {self.name}: {' '.join(argv)} failed: "
                                    f"{result.stderr.strip()}")

    def _kubelet_config(self) -> dict:
        return {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "failCgroupV1": False,
            "failSwapOn": False,
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": self.cgroup_root,
            "address": self.address,
            "port": 10250,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "authentication": {
                "x509": {"clientCAFile": "/var/lib/kubelet/ca.crt"},
                "anonymous": {"enabled": False},
                "webhook": {"enabled": False},
            },
            # The API server is the only client (its cert is from the test CA).
            "authorization": {"mode": "AlwaysAllow"},
            "containerRuntimeEndpoint": f"unix://{CONTAINERD_SOCKET}",
            "resolvConf": "/var/lib/kubelet/resolv.conf",
            "clusterDomain": "cluster.local",
            "maxPods": self.spec.max_pods,
            "serializeImagePulls": False,
            # The node's disk is the overlay's tmpfs: never evict or GC for space here.
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%",
                             "imagefs.available": "1%", "nodefs.inodesFree": "1%"},
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "registerWithTaints": [dict(t) for t in self.spec.taints],
            "syncFrequency": "10s",
            "nodeStatusReportFrequency": "10s",
            "shutdownGracePeriod": "0s",
            "containerLogMaxSize": "10Mi",
        }

    def _kubelet_argv(self) -> list[str]:
        labels = {NODE_LABEL: "true", "type": "real", **self.spec.labels}
        return [
            str(self.tools.binary("kubelet")),
            "--config=/var/lib/kubelet/config.yaml",
            "--kubeconfig=/var/lib/kubelet/kubeconfig",
            f"--hostname-override={self.name}",
            f"--node-ip={self.address}",
            "--node-labels=" + ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
            "--v=1",
        ]

    def _containerd_config(self) -> str:
        return f"""version = 3
root = "/var/lib/containerd"
state = "/run/containerd"

[grpc]
  address = "{CONTAINERD_SOCKET}"

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "{build.PAUSE_IMAGE}"
  [plugins."io.containerd.cri.v1.images".registry]
    config_path = "/etc/containerd/certs.d"

[plugins."io.containerd.cri.v1.runtime"]
  enable_selinux = false
  disable_apparmor = true
  # root has no CAP_SYS_RESOURCE here: without this runc fails to lower oom_score_adj.
  restrict_oom_score_adj = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "{shutil.which('runc') or '/usr/sbin/runc'}"
        SystemdCgroup = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["{CNI_DIR}"]
    conf_dir = "/etc/cni/net.d"

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
"""

    def _cni_config(self) -> dict:
        return {
            "cniVersion": "1.0.0",
            "name": "cubeinstall-real-node",
            "plugins": [
                {"type": "bridge", "bridge": "cni0", "isGateway": True, "ipMasq": False,
                 "hairpinMode": True,
                 "ipam": {"type": "host-local", "ranges": [[{"subnet": POD_SUBNET}]],
                          "dataDir": "/run/cni/networks"}},
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }

    # --- stop -------------------------------------------------------------------

    def stop(self) -> None:
        """Stop everything and undo every host change; idempotent."""
        errors = []
        for proc in self.processes:
            if proc.name.endswith("-kubelet"):
                try:
                    proc.stop(timeout=10)
                except Exception as exc:  # noqa: BLE001
                    errors.append(f"{proc.name}: {exc}")
        self._kill_cgroup_tasks(errors)
        if self._mnt_ns is None and self.processes and self.holder.running():
            self._mnt_ns = _ns_inode(self.holder.pid, "mnt")
            self._net_ns = _ns_inode(self.holder.pid, "net")
        # A killed process leaves only once its I/O ends: mysqld flushing on a loaded
        # machine stayed in the node's mount namespace for over 10 s (uninterruptible).
        deadline = time.monotonic() + 60
        for ns, kind in ((self._mnt_ns, "mnt"), (self._net_ns, "net")):
            while ns and (pids := [p for p in _pids_in_namespace(ns, kind) if pid_alive(p)]):
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                if time.monotonic() > deadline:
                    break  # reported by leftovers() below
                time.sleep(0.05)
        for proc in reversed(self.processes):
            try:
                proc.stop(timeout=5)
            except Exception as exc:  # noqa: BLE001
                errors.append(f"{proc.name}: {exc}")
        self._kill_cgroup_tasks(errors)
        self._remove_cgroups(errors)
        if self.index is not None:
            deadline = time.monotonic() + 10
            while self._interface_exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            if self._interface_exists():
                subprocess.run(["ip", "link", "del", self.host_interface], capture_output=True,
                               check=False)
                if self._interface_exists():
                    errors.append(f"interface {self.host_interface} is still there")
        shutil.rmtree(self.workdir / "containerd", ignore_errors=True)
        left = self.leftovers()
        if left:
            errors.append("left on the host: " + "; ".join(left))
        if errors:
            raise RealNodeError(f"real node {self.name} did not stop cleanly: " + "; ".join(errors))

    def _cgroup_dirs(self) -> list[Path]:
        if not self.cgroup_root:
            return []
        dirs = []
        for hierarchy in _hierarchies():
            top = hierarchy / self.cgroup_root.lstrip("/")
            if top.is_dir():
                dirs += [Path(d) for d, _, _ in os.walk(top)]
        return dirs

    def _kill_cgroup_tasks(self, errors: list[str]) -> None:
        deadline = time.monotonic() + 15
        while True:
            pids = set()
            for directory in self._cgroup_dirs():
                try:
                    pids |= {int(p) for p in (directory / "cgroup.procs").read_text().split()}
                except OSError:
                    pass
            pids = {p for p in pids if pid_alive(p)}
            if not pids:
                return
            if time.monotonic() > deadline:
                errors.append(f"processes {sorted(pids)} survive in cgroup {self.cgroup_root}")
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)

    def _remove_cgroups(self, errors: list[str]) -> None:
        deadline = time.monotonic() + 10
        for directory in sorted(self._cgroup_dirs(), key=lambda p: len(p.parts), reverse=True):
            while True:
                try:
                    directory.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if time.monotonic() > deadline:
                        errors.append(f"cannot remove cgroup {directory}: {exc}")
                        break
                    time.sleep(0.1)
        for created in sorted(self.created_cgroups, key=len, reverse=True):
            if self._shared_parent(Path(created)):
                continue
            try:
                Path(created).rmdir()
            except FileNotFoundError:
                pass
            except OSError as exc:
                errors.append(f"cannot remove cgroup {created}: {exc}")

    def _shared_parent(self, created: Path) -> bool:
        """A parent cgroup this node created above its own, that another test run's node
        now uses too (two commands' runs below the same parent): left in place, since
        removing it would fail (EBUSY); at worst an empty cgroup directory remains."""
        own = str(created).endswith(self.cgroup_root or "\0")
        return not own and created.is_dir() and any(c.is_dir() for c in created.iterdir())

    def _interface_exists(self) -> bool:
        return Path(f"/sys/class/net/{self.host_interface}").exists()

    def leftovers(self) -> list[str]:
        """What of this node is still on the host (empty after a clean stop)."""
        left = []
        for proc in self.processes:
            if proc.running():
                left.append(f"process {proc.name} (pid {proc.pid})")
        for ns, kind in ((self._mnt_ns, "mnt"), (self._net_ns, "net")):
            if ns:
                left += [f"pid {pid} in the node's {kind} namespace"
                         for pid in _pids_in_namespace(ns, kind) if pid_alive(pid)]
        left += [f"cgroup {d}" for d in self._cgroup_dirs()]
        left += [f"cgroup {d}" for d in self.created_cgroups
                 if Path(d).exists() and not self._shared_parent(Path(d))]
        if self.index is not None and self._interface_exists():
            left.append(f"interface {self.host_interface}")
        if (self.workdir / "containerd").exists() and any((self.workdir / "containerd").iterdir()):
            left.append(f"containerd store {self.workdir / 'containerd'}")
        return left

    def tails(self, lines: int = 25) -> str:
        return "\n".join(format_tail(p.name, p.log_path, lines) for p in self.processes)

    # --- state (scripts/testcluster) ------------------------------------------------

    def to_state(self) -> dict:
        return {"name": self.name, "workdir": str(self.workdir), "index": self.index,
                "cgroup_root": self.cgroup_root, "created_cgroups": self.created_cgroups,
                "mnt_ns": self._mnt_ns, "net_ns": self._net_ns, "address": self.address
                if self.index is not None else None,
                "processes": [_attachable(p.to_state()) for p in self.processes]}

    @classmethod
    def from_state(cls, state: dict, tools: build.Toolset) -> RealNode:
        node = cls(Path(state["workdir"]), RealNodeSpec(state["name"]), tools=tools,
                   server="", ca_cert=Path(), ca_key=Path())
        node.index = state["index"]
        node.cgroup_root = state["cgroup_root"]
        node.created_cgroups = list(state["created_cgroups"])
        node._mnt_ns, node._net_ns = state["mnt_ns"], state["net_ns"]
        node.processes = [ManagedProcess.from_state(p) for p in state["processes"]]
        return node
