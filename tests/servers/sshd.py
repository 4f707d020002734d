"""Sandboxed SSH test nodes (pytest plugin: ``-p tests.servers.sshd``).

Each node is a real OpenSSH sshd on its own 127.0.0.x address, running in its
own mount + UTS namespace (``unshare``) chrooted into an overlay of ``/``
whose writable layer is a private tmpfs: everything a node changes (/etc,
/data, users, sudoers) vanishes with it and the machine running the tests is
never modified. /run, /tmp and /data are private tmpfs; /proc/swaps is a file
of the node's own. Recording shims (tests/servers/shims) are bind-mounted over
/usr/local/bin and /usr/local/sbin — the only PATH entries that come first
for login shells, sudo's secure_path and our fixed PATH alike — and stand in
for systemd, docker, containerd, nvidia-smi, swapoff and findmnt; the mount
helpers (mount.ceph, mount.nfs), nvidia-container-runtime, nvidia-ctk and the
program of an active firewall unit are copied, per node, to where their
packages install them, so the real mount(8) reads the real /etc/fstab and
calls them. SSH transport, auth, sudo, host keys and file edits
are all real. A node's files are read from the host via /proc/<sshd>/root.

If something needed is missing or a node does not come up, the fixture fails
the test with the reason and sshd's log; it never skips.
"""

from __future__ import annotations

import itertools
import json
import shlex
import shutil
import socket
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.processes import ManagedProcess, ProcessError, wait_until

SHIMS = Path(__file__).parent / "shims"
FIREWALLS = ("firewalld", "ufw")
SHIM_STATE = "/run/cubeinstall-shims"
DEFAULT_FSTAB = ("# /etc/fstab: static file system information.\n"
                 "UUID=0a1b2c3d-0000-4000-8000-000000000001 / ext4 errors=remount-ro 0 1\n")
SWAPS_HEADER = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
_addresses = itertools.count(10)
_address_lock = threading.Lock()


@dataclass(frozen=True)
class User:
    name: str
    sudo: str | None = "nopasswd"  # nopasswd | password | None (no sudo rights)
    password: str | None = None  # also the sudo password


@dataclass(frozen=True)
class NodeSpec:
    users: tuple[User, ...] = ()
    root_password: str | None = None
    mount_helpers: tuple[str, ...] = ("ceph", "nfs")
    gpus: tuple[str, ...] = ()  # "driver,name" lines for nvidia-smi
    nvidia_tools: tuple[str, ...] = ()  # from helpers/: nvidia-container-runtime, nvidia-ctk
    swap: bool = False
    ntp_synchronized: bool = True
    active_units: tuple[str, ...] = ("docker",)
    files: dict[str, bytes] = field(default_factory=dict)  # path on the node -> content
    log_sessions: bool = False  # sshd logs each session it starts (see SandboxNode.sessions)


@dataclass
class SandboxNode:
    name: str
    address: str
    port: int
    workdir: Path
    host_key_line: str  # "ssh-ed25519 AAAA..."
    process: ManagedProcess

    @property
    def root(self) -> Path:
        """The node's file system, seen from the host."""
        return Path(f"/proc/{self.process.pid}/root")

    def path(self, node_path: str) -> Path:
        return self.root / node_path.lstrip("/")

    def read(self, node_path: str) -> bytes:
        return self.path(node_path).read_bytes()

    def write(self, node_path: str, content: bytes, mode: int = 0o644) -> None:
        target = self.path(node_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        target.chmod(mode)

    def sessions(self) -> int:
        """Sessions (exec channels) sshd started so far; needs NodeSpec(log_sessions=True)."""
        return (self.workdir / "sshd.log").read_text().count("Starting session: ")

    def shim_calls(self, name: str | None = None) -> list[list[str]]:
        try:
            lines = self.read(f"{SHIM_STATE}/calls.log").decode().splitlines()
        except FileNotFoundError:
            return []
        calls = [json.loads(line) for line in lines]
        return [call for call in calls if name is None or call[0] == name]

    def known_hosts_entry(self) -> str:
        return f"[{self.address}]:{self.port} {self.host_key_line}\n"

    def running(self) -> bool:
        return self.process.running()

    def stop(self) -> None:
        self.process.stop(timeout=5)


def _free_address() -> tuple[str, int]:
    """A loopback address of our own and a free port on it."""
    with _address_lock:
        index = next(_addresses)
    address = f"127.0.{index // 250}.{index % 250 + 2}"
    with socket.socket() as sock:
        sock.bind((address, 0))
        return address, sock.getsockname()[1]


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)],
                   check=True, capture_output=True)
    return path.with_suffix(".pub").read_text().strip()


def _sshd_config(address: str, port: int, log_sessions: bool) -> str:
    return "\n".join([
        *(["LogLevel VERBOSE"] if log_sessions else []),
        f"ListenAddress {address}:{port}",
        "HostKey /etc/ssh/sandbox/ssh_host_ed25519_key",
        "PidFile /run/sshd-sandbox.pid",
        "AuthorizedKeysFile /etc/ssh/authorized_keys.d/%u",
        "UsePAM no", "PermitRootLogin yes", "PasswordAuthentication yes",
        "KbdInteractiveAuthentication no", "AllowTcpForwarding yes", "UseDNS no",
        "MaxStartups 200", "MaxSessions 64", "Subsystem sftp internal-sftp", "",
    ])


def _setup_script(name: str, workdir: Path, spec: NodeSpec, client_pub: Path,
                  seeds: dict[str, Path]) -> str:
    """Bash run inside the new namespaces; ends by exec-ing sshd in the node root."""
    root, state, r = workdir / "root", workdir / "state", shlex.quote(str(workdir / "root"))
    lines = [
        "set -eu",
        f"hostname {shlex.quote(name)}",
        f"mount -t tmpfs -o size=512m tmpfs {shlex.quote(str(state))}",
        f"mkdir {shlex.quote(str(state / 'upper'))} {shlex.quote(str(state / 'work'))}",
        f"mount -t overlay overlay -o lowerdir=/,upperdir={state}/upper,workdir={state}/work {r}",
        *(f"mount --rbind /{d} {r}/{d}" for d in ("proc", "sys", "dev")),
        f"mkdir -p {r}/data",  # in the overlay: private
        *(f"mount -t tmpfs -o size=256m,mode={m} tmpfs {r}/{d}"
          for d, m in (("run", "0755"), ("tmp", "1777"), ("data", "0755"))),
        # Read-only: nothing a node does may write into the source tree.
        *(f"mount --bind {shlex.quote(str(SHIMS / d))} {r}/usr/local/{d} && "
          f"mount -o remount,bind,ro {r}/usr/local/{d}" for d in ("bin", "sbin")),
        (f"mkdir -p {r}/run/sshd {r}{SHIM_STATE}/active {r}/etc/ssh/sandbox "
         f"{r}/etc/ssh/authorized_keys.d {r}/etc/docker {r}/etc/ceph"),
        f"cp {shlex.quote(str(workdir / 'ssh_host_ed25519_key'))} {r}/etc/ssh/sandbox/",
        f"cp {shlex.quote(str(workdir / 'sshd_config'))} {r}/etc/ssh/sandbox/",
        f"chmod 600 {r}/etc/ssh/sandbox/ssh_host_ed25519_key",
        f"echo '127.0.1.1 {name}' >> {r}/etc/hosts",
        # root's dot files as on a fresh server, not this machine's (pyenv init in
        # .bashrc would cost every SSH session ~100 processes).
        f"cp /etc/skel/.bashrc /etc/skel/.profile {r}/root/",
        # The node's own /proc/swaps, which the swapoff shim may empty.
        f"cp {shlex.quote(str(workdir / 'swaps'))} {r}{SHIM_STATE}/swaps",
        f"mount --bind {r}{SHIM_STATE}/swaps {r}/proc/swaps",
    ]
    for helper in spec.mount_helpers:
        lines.append(f"cp {shlex.quote(str(SHIMS / 'helpers' / 'mount-helper'))} "
                     f"{r}/usr/sbin/mount.{helper}")
    for tool in spec.nvidia_tools:
        lines.append(f"cp {shlex.quote(str(SHIMS / 'helpers' / tool))} {r}/usr/bin/")
    for node_path, seed in seeds.items():
        target = shlex.quote(str(root) + node_path)
        lines.append(f"mkdir -p $(dirname {target}) && cp {shlex.quote(str(seed))} {target}")
    for unit in spec.active_units:
        lines.append(f"touch {r}{SHIM_STATE}/active/{shlex.quote(unit)}")
        if unit in FIREWALLS:  # an active firewall's program is installed
            lines.append(f"cp {shlex.quote(str(SHIMS / 'helpers' / 'firewall'))} {r}/usr/sbin/{unit}")
    # docker "was started at boot" with the seeded daemon.json (or none).
    lines.append(f"if [ -f {r}/etc/docker/daemon.json ]; then cp {r}/etc/docker/daemon.json "
                 f"{r}{SHIM_STATE}/docker-running.json; else echo '{{}}' > "
                 f"{r}{SHIM_STATE}/docker-running.json; fi")
    if spec.gpus:
        lines.append(f"cp {shlex.quote(str(workdir / 'gpus'))} {r}{SHIM_STATE}/gpus")
    lines.append(f"echo {'yes' if spec.ntp_synchronized else 'no'} > {r}{SHIM_STATE}/ntp")
    keys = shlex.quote(str(client_pub))
    if spec.root_password:
        lines.append(f"chroot {r} chpasswd < {shlex.quote(str(workdir / 'root.passwd'))}")
    lines.append(f"cp {keys} {r}/etc/ssh/authorized_keys.d/root")
    for user in spec.users:
        u = shlex.quote(user.name)
        lines.append(f"chroot {r} useradd -m -s /bin/bash {u}")
        if user.password:
            lines.append(f"chroot {r} chpasswd < {shlex.quote(str(workdir / (user.name + '.passwd')))}")
        else:
            lines.append(f"chroot {r} usermod -p '*' {u}")  # '!' (locked) is refused without PAM
        lines.append(f"cp {keys} {r}/etc/ssh/authorized_keys.d/{u}")
        if user.sudo:
            rule = "NOPASSWD: ALL" if user.sudo == "nopasswd" else "ALL"
            lines.append(f"echo {shlex.quote(f'{user.name} ALL=(ALL) {rule}')} > {r}/etc/sudoers.d/{u}"
                         f" && chmod 440 {r}/etc/sudoers.d/{u}")
    lines.append(f"chmod 644 {r}/etc/ssh/authorized_keys.d/*")
    lines.append(f"exec chroot {r} /usr/sbin/sshd -D -e -f /etc/ssh/sandbox/sshd_config")
    return "\n".join(lines) + "\n"


def _banner(address: str, port: int) -> bool:
    with socket.create_connection((address, port), timeout=2) as sock:
        return sock.recv(8).startswith(b"SSH-2.0")


def require_tools() -> None:
    missing = [tool for tool in ("unshare", "sshd", "ssh-keygen", "sudo", "chroot")
               if not (shutil.which(tool) or Path(f"/usr/sbin/{tool}").exists())]
    if missing:
        pytest.fail(f"sandboxed SSH nodes need {', '.join(missing)}: apt-get install "
                    "openssh-server openssh-client sudo util-linux", pytrace=False)


def start_node(name: str, workdir: Path, client_pub: Path, spec: NodeSpec = NodeSpec(),
               address: tuple[str, int] | None = None) -> SandboxNode:
    """Start one node; ``address`` reuses a stopped node's address and port."""
    workdir.mkdir(parents=True)
    for sub in ("root", "state", "seed"):
        (workdir / sub).mkdir()
    address, port = address or _free_address()
    host_key = _keygen(workdir / "ssh_host_ed25519_key")
    (workdir / "sshd_config").write_text(_sshd_config(address, port, spec.log_sessions))
    files = {"/etc/fstab": DEFAULT_FSTAB.encode() + (b"/swapfile none swap sw 0 0\n" if spec.swap else b""),
             **spec.files}
    seeds = {}
    for index, (node_path, content) in enumerate(files.items()):
        seeds[node_path] = workdir / "seed" / str(index)
        seeds[node_path].write_bytes(content)
    swaps = SWAPS_HEADER + ("/swapfile\t\t\t\tfile\t\t1048572\t\t0\t\t-2\n" if spec.swap else "")
    (workdir / "swaps").write_text(swaps)
    (workdir / "gpus").write_text("".join(f"{gpu}\n" for gpu in spec.gpus))
    for who, password in [("root", spec.root_password),
                          *((u.name, u.password) for u in spec.users)]:
        if password:
            path = workdir / f"{who}.passwd"
            path.touch(mode=0o600)
            path.write_text(f"{who}:{password}\n")
    script = workdir / "setup.sh"
    script.write_text(_setup_script(name, workdir, spec, client_pub, seeds))
    process = ManagedProcess(f"sshd {name}", ["unshare", "--mount", "--uts", "--propagation",
                                              "private", "bash", str(script)],
                             workdir / "sshd.log").start()
    try:
        wait_until(lambda: _banner(address, port), timeout=20, what=f"sshd of node {name}",
                   watched=[process], blame=process)
    except ProcessError as exc:
        process.stop(timeout=5)
        pytest.fail(f"sandboxed node {name} did not start: {exc}", pytrace=False)
    return SandboxNode(name, address, port, workdir, host_key, process)


class NodeFactory:
    """Starts nodes for one test (or one benchmark) and stops them all at the end.

    ``rtt_ms``: every node of this factory is reached over a link with that
    round trip (tests/servers/link_delay.py); 0, the default, adds nothing.
    """

    def __init__(self, workdir: Path, client_key: Path, rtt_ms: float = 0):
        self.workdir = workdir
        self.client_key = client_key
        self.nodes: list[SandboxNode] = []
        self.link_delay = None
        if rtt_ms:
            from tests.servers.link_delay import LinkDelay, LinkDelayError

            workdir.mkdir(parents=True, exist_ok=True)
            try:
                self.link_delay = LinkDelay(rtt_ms, workdir / "link-delay.log")
            except LinkDelayError as exc:
                pytest.fail(f"sandboxed nodes with a {rtt_ms} ms round trip: {exc}", pytrace=False)

    def _started(self, node: SandboxNode) -> SandboxNode:
        if self.link_delay is not None:
            self.link_delay.add(node.address, node.port)
        self.nodes.append(node)
        return node

    def start(self, count: int = 1, spec: NodeSpec = NodeSpec(), prefix: str = "node") -> list[SandboxNode]:
        started = []
        for _ in range(count):
            name = f"{prefix}{len(self.nodes) + 1}"
            started.append(self._started(
                start_node(name, self.workdir / name, self.client_key.with_suffix(".pub"), spec)))
        return started

    def restart(self, node: SandboxNode, spec: NodeSpec = NodeSpec()) -> SandboxNode:
        """The same address and port, a new sandbox and a NEW host key."""
        node.stop()
        again = start_node(node.name, self.workdir / f"{node.name}-again", self.client_key.with_suffix(".pub"),
                           spec, address=(node.address, node.port))
        return self._started(again)

    def stop_all(self) -> None:
        try:
            for node in self.nodes:
                node.stop()
        finally:
            if self.link_delay is not None:
                self.link_delay.close()


def client_keypair(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    key = directory / "id_ed25519"
    if not key.exists():
        _keygen(key)
    return key


def site_data(nodes: list[SandboxNode], workdir: Path, *, key_file: Path | None,
              storage: dict | None = None, **overrides: Any) -> dict:
    """A minimal valid site for these nodes (pass to Site.model_validate)."""
    data: dict[str, Any] = {
        "site": "sandbox",
        "domain": "cube.sandbox.test",
        "ssh": {"user": "root", "key_file": str(key_file) if key_file else None,
                "known_hosts": str(workdir / "known_hosts"),
                "config_file": str(workdir / "ssh_config"), "connect_timeout": 5,
                "command_timeout": 60},
        "nodes": [{"name": n.name, "address": n.address, "port": n.port,
                   "roles": ["cpu", "train"]} for n in nodes],
        "storage": storage or {"type": "local"},
        "mysql": {"password": "mysql-pw"},
        "redis": {"password": "redis-pw"},
        "gateway": {"expose": "NodePort"},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return data


def make_site(nodes: list[SandboxNode], workdir: Path, key_file: Path | None, **overrides: Any):
    from cubeinstall.site.model import Site

    data = site_data(nodes, workdir, key_file=key_file, **overrides)
    return Site.model_validate(data, context={"base_dir": str(workdir)})


def stage_context(site, *, trust_new_hosts: bool = False, dry_run: bool = False):
    """A run context whose output is JSON events in memory (tests read ``ctx.out.events``)."""
    import io

    from cubeinstall.core.context import RunContext, RunOptions
    from cubeinstall.core.output import Output

    out = Output(json_mode=True, stream=io.StringIO())
    return RunContext(site, out, RunOptions(trust_new_hosts=trust_new_hosts, dry_run=dry_run))


def snapshot(node: SandboxNode, *node_paths: str, skip: tuple[str, ...] = ()) -> dict[str, tuple]:
    """(inode, mtime, mode, size, content) of every file/dir/symlink under the paths:
    equal snapshots mean nothing was written, replaced or touched."""
    import os

    result: dict[str, tuple] = {}

    def add(path: Path) -> None:
        node_path = "/" + str(path.relative_to(node.root))
        if node_path in skip or not os.path.lexists(path):
            return
        info = path.lstat()
        content = path.read_bytes() if path.is_file() and not path.is_symlink() else None
        link = os.readlink(path) if path.is_symlink() else None
        result[node_path] = (info.st_ino, info.st_mtime_ns, info.st_mode, info.st_size, content, link)

    for node_path in node_paths:
        top = node.path(node_path)
        add(top)
        if top.is_dir() and not top.is_symlink():
            for directory, dirs, files in os.walk(top):
                for name in dirs + files:
                    add(Path(directory) / name)
    return result


def trust(nodes: list[SandboxNode], known_hosts: Path) -> None:
    """Record the nodes' real host keys, as an operator who checked them would."""
    with known_hosts.open("a") as handle:
        for node in nodes:
            handle.write(node.known_hosts_entry())


@pytest.fixture(scope="session")
def ssh_client_key(tmp_path_factory) -> Path:
    require_tools()
    return client_keypair(tmp_path_factory.mktemp("ssh-client"))


@pytest.fixture
def round_trips(monkeypatch):
    """Scripts sent per node name (each a round trip to the host), counted on our side."""
    from collections import Counter

    from cubeinstall.remote.ssh import Connection

    counts: Counter = Counter()
    run = Connection.run

    def counted(self, body, timeout=None):
        counts[self.target.name] += 1
        return run(self, body, timeout)

    monkeypatch.setattr(Connection, "run", counted)
    return counts


@pytest.fixture
def sandbox_nodes(tmp_path_factory, ssh_client_key) -> NodeFactory:
    factory = NodeFactory(tmp_path_factory.mktemp("nodes"), ssh_client_key)
    yield factory
    factory.stop_all()
