"""A real Kubernetes control plane made of plain local processes.

etcd + kube-apiserver + kube-controller-manager + kube-scheduler, with
kwok standing in for the kubelets of a few fake nodes -- the recipe of
envtest and of kwokctl's "binary" runtime.  Unlike envtest, the
controllers and the scheduler run, so Deployments roll out, Jobs
complete, namespaces finalize and node selectors really decide placement;
unlike kind, no container runtime is needed.

    with ControlPlane(workdir) as cp:      # or cp = ControlPlane(...).start()
        client = cp.api_client()
        cp.add_node(FakeNode("big", labels={"gpu": "true"}, capacity={"nvidia.com/gpu": "4"}))

Every process runs in its own process group with a log file in
``workdir/logs``; a failure at any step stops everything started so far
and raises ProcessError (or its subclass ControlPlaneError) naming the
failing process and quoting its log tail.  stop() leaves nothing behind:
no process, no etcd data, no temp dir (after a failed start the logs are
kept, and the error message says where).
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from . import build
from .nodes import (
    DEFAULT_NODES,
    FAKE_LOG_LINES,
    KUBELET_ADDRESS,
    KWOK_ANNOTATION_SELECTOR,
    FakeNode,
    create_nodes,
    unready_nodes,
)
from .pki import FRONT_PROXY_CN, Pki, write_kubeconfig, write_pki
from .processes import ManagedProcess, ProcessError, format_tail, free_port, wait_until
from .realnode import RealNode, RealNodeSpec
from .simulate import write_stages as write_simulation_stages

# Loopback ranges on purpose: the API server dials Service IPs (admission
# webhooks backed by a Service) and node/pod IPs (logs, port-forward). With
# private ranges those connections would leave this machine by its default
# route; on 127/8 they end at once with "connection refused".
SERVICE_CIDR = "127.96.0.0/16"
SERVICE_IP = "127.96.0.1"  # first address of SERVICE_CIDR: the `kubernetes` Service
POD_CIDR = "127.244.0.1/16"  # kwok hands out pod IPs from here
ALWAYS_ALLOW = "/healthz,/readyz,/livez,/metrics"
# The controllers' and scheduler's client rate limit (default 20 requests/s, burst 30)
# is sized for shared production API servers; here it made 60 Deployments take 14 s
# to roll out instead of 3.4 s, all of it spent waiting on the limiter.
CLIENT_RATE = ("--kube-api-qps=200", "--kube-api-burst=400")
STATE_FILE = "state.json"


class ControlPlaneError(ProcessError):
    """The control plane could not be started (or stopped) as asked."""


ETCD_DIR_PREFIX = "cubeinstall-etcd-"


def _tmpfs_base() -> Path:
    """/dev/shm when usable (etcd fsyncs every write), else the temp dir."""
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())


def _sweep_stale_etcd_dirs() -> None:
    """Remove etcd data dirs no live etcd uses (left by killed test runs).

    They sit in RAM on tmpfs, so leaks would add up across crashed runs.
    """
    dirs = list(_tmpfs_base().glob(ETCD_DIR_PREFIX + "*"))
    if not dirs:
        return
    in_use = b"\0".join(_cmdlines())
    for path in dirs:
        if f"--data-dir={path}".encode() not in in_use:
            shutil.rmtree(path, ignore_errors=True)


def _cmdlines() -> list[bytes]:
    result = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                result.append((entry / "cmdline").read_bytes())
            except OSError:
                pass
    return result


def _https_get(url: str, pki: Pki, client: str | None, timeout: float = 2.0) -> tuple[int, str]:
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    if client:
        cert, key = pki.client_files(client)
        context.load_cert_chain(str(cert), str(key))
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
    )
    try:
        with opener.open(url, timeout=timeout) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")


def _http_ok(url: str, timeout: float = 2.0) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=timeout) as response:
        return response.status == 200


class ControlPlane:
    """Start, inspect and stop one local test cluster.

    ``workdir`` receives the PKI, kubeconfigs, logs and state.json; when
    None a temp dir is made and removed again by stop().  etcd's data
    always goes to a separate tmpfs dir that stop() removes.
    """

    def __init__(
        self,
        workdir: str | os.PathLike[str] | None = None,
        nodes: Iterable[FakeNode] = DEFAULT_NODES,
        *,
        tools: build.Toolset | None = None,
        timeout: float = 120.0,
        detached: bool = False,
        real_node: bool | RealNodeSpec = False,
    ) -> None:
        self._own_workdir = workdir is None
        self.workdir = (
            Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="cubeinstall-kube-"))
        )
        self.nodes = tuple(nodes)
        self.tools = tools
        self.timeout = timeout
        #: Detached processes survive the Python process that started them.
        self.detached = detached
        self.kubeconfig = self.workdir / "kubeconfig"
        self.server: str | None = None
        #: kwok's kubelet API (pod logs) at KUBELET_ADDRESS; see FakeNode.kubelet_port.
        self.kubelet_port: int | None = None
        self.processes: list[ManagedProcess] = []
        self.timings: dict[str, float] = {}
        self._etcd_dir: Path | None = None
        #: A real kubelet + containerd node (realnode.py) when asked for, besides kwok's.
        self.real_node_spec: RealNodeSpec | None = (
            RealNodeSpec() if real_node is True else real_node or None)
        self.real_node: RealNode | None = None

    # --- public API -----------------------------------------------------

    def start(self) -> ControlPlane:
        """Bring the whole cluster up; on any failure stop it and raise."""
        started = time.monotonic()
        if (self.workdir / STATE_FILE).exists():
            # Checked before the try: the cleanup below would delete the
            # state of the cluster that is running there.
            raise ControlPlaneError(
                f"{self.workdir} already holds a running test cluster ({STATE_FILE}); stop it first"
            )
        try:
            self._start()
        except BaseException as exc:
            self.stop(remove_logs=False)
            if isinstance(exc, (ProcessError, build.BuildError)) or not isinstance(exc, Exception):
                raise
            raise ControlPlaneError(
                f"test cluster start failed: {exc!r}\n{self._all_tails()}"
            ) from exc
        self.timings["total"] = time.monotonic() - started
        return self

    def stop(self, *, remove_logs: bool = True) -> None:
        """Stop every process (reverse start order) and remove temp dirs.

        Idempotent.  Logs in a caller-provided workdir are kept; the
        temp workdir made when none was given is removed with them.
        """
        errors = []
        if self.real_node is not None:
            try:
                self.real_node.stop()
            except Exception as exc:  # noqa: BLE001 - keep stopping the others
                errors.append(str(exc))
        for proc in reversed(self.processes):
            try:
                proc.stop()
            except Exception as exc:  # noqa: BLE001 - keep stopping the others
                errors.append(f"{proc.name} (pid {proc.pid}): {exc}")
        if self._etcd_dir is not None:
            shutil.rmtree(self._etcd_dir, ignore_errors=True)
        (self.workdir / STATE_FILE).unlink(missing_ok=True)
        if self._own_workdir and remove_logs:
            shutil.rmtree(self.workdir, ignore_errors=True)
        if errors:
            raise ControlPlaneError("could not stop: " + "; ".join(errors))

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def pids(self) -> dict[str, int]:
        return {p.name: p.pid for p in self.processes}

    def api_client(self) -> Any:
        """A new kubernetes.client.ApiClient for the admin kubeconfig."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))

    def add_node(self, *nodes: FakeNode, timeout: float = 60.0) -> None:
        """Create more fake nodes and wait until pods can be scheduled on them."""
        with self.api_client() as api:
            create_nodes(api, nodes)
            self._wait_nodes(api, [n.name for n in nodes], timeout)
        self.nodes += tuple(nodes)

    def running(self) -> dict[str, bool]:
        processes = [*self.processes, *(self.real_node.processes if self.real_node else ())]
        return {p.name: p.running() for p in processes}

    # --- detached clusters (scripts/testcluster) -------------------------

    @classmethod
    def attach(cls, workdir: str | os.PathLike[str]) -> ControlPlane:
        """Re-open a cluster started by another process, from its state.json."""
        workdir = Path(workdir)
        try:
            state = json.loads((workdir / STATE_FILE).read_text())
        except FileNotFoundError:
            raise ControlPlaneError(f"no test cluster state in {workdir}") from None
        cp = cls(workdir, nodes=())
        cp.server = state.get("server")
        cp._etcd_dir = Path(state["etcd_dir"]) if state.get("etcd_dir") else None
        cp.processes = [ManagedProcess.from_state(p) for p in state["processes"]]
        if state.get("real_node"):
            cp.real_node = RealNode.from_state(state["real_node"], build.toolset())
        return cp

    def _save_state(self) -> None:
        state = {
            "server": self.server,
            "kubeconfig": str(self.kubeconfig),
            "etcd_dir": str(self._etcd_dir) if self._etcd_dir else None,
            "processes": [p.to_state() for p in self.processes],
            "real_node": self.real_node.to_state() if self.real_node else None,
        }
        tmp = self.workdir / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        tmp.replace(self.workdir / STATE_FILE)

    # --- start-up steps --------------------------------------------------

    def _start(self) -> None:
        parts = build.PARTS if self.real_node_spec else build.CONTROL_PLANE_PARTS
        tools = self.tools = self.tools or build.ensure(build=False, parts=parts)
        self.workdir.mkdir(parents=True, exist_ok=True)
        t = time.monotonic()
        pki = write_pki(self.workdir / "pki", SERVICE_IP)
        ports = {
            name: free_port()
            for name in ("etcd", "etcd-peer", "apiserver", "kcm", "scheduler", "kubelet")
        }
        self.kubelet_port = ports["kubelet"]
        self.server = f"https://127.0.0.1:{ports['apiserver']}"
        kubeconfigs = {
            name: write_kubeconfig(
                self.workdir / ("kubeconfig" if name == "admin" else f"{name}.kubeconfig"),
                server=self.server,
                ca_pem=pki.ca_cert.read_bytes(),
                client=pki.clients[name],
                user=name,
            )
            for name in pki.clients
        }
        self.timings["pki"] = time.monotonic() - t

        etcd = self._spawn("etcd", self._etcd_argv(tools, ports))
        self.timings["etcd"] = wait_until(
            lambda: _http_ok(f"http://127.0.0.1:{ports['etcd']}/health"),
            timeout=30,
            what="etcd /health",
            watched=[etcd],
            blame=etcd,
        )

        apiserver = self._spawn("kube-apiserver", self._apiserver_argv(tools, pki, ports))
        self.timings["kube-apiserver"] = wait_until(
            lambda: _https_get(f"{self.server}/readyz", pki, "admin")[0] == 200,
            timeout=self.timeout,
            what="kube-apiserver /readyz",
            watched=[etcd, apiserver],
            blame=apiserver,
        )

        kcm = self._spawn("kube-controller-manager", self._kcm_argv(tools, pki, ports, kubeconfigs))
        scheduler = self._spawn(
            "kube-scheduler", self._scheduler_argv(tools, pki, ports, kubeconfigs)
        )
        # HOME: kwok also loads ~/.kwok/kwok.yaml when present; keep it hermetic.
        self._spawn(
            "kwok", self._kwok_argv(tools, kubeconfigs, pki), env={"HOME": str(self.workdir)}
        )
        t = time.monotonic()
        for proc, port in ((kcm, ports["kcm"]), (scheduler, ports["scheduler"])):
            wait_until(
                lambda port=port: (
                    _https_get(f"https://127.0.0.1:{port}/healthz", pki, None)[0] == 200
                ),
                timeout=self.timeout,
                what=f"{proc.name} /healthz",
                watched=self.processes,
                blame=proc,
            )
        self.timings["controllers"] = time.monotonic() - t

        t = time.monotonic()
        with self.api_client() as api:
            create_nodes(api, self.nodes)
            self._wait_nodes(api, [n.name for n in self.nodes], self.timeout)
            self._wait_default_service_account(api, kcm)
        self.timings["nodes"] = time.monotonic() - t
        if self.real_node_spec is not None:
            self._start_real_node(tools, pki)

    def _start_real_node(self, tools: build.Toolset, pki: Pki) -> None:
        t = time.monotonic()
        self.real_node = RealNode(self.workdir / "real-node", self.real_node_spec, tools=tools,
                                  server=self.server, ca_cert=pki.ca_cert, ca_key=pki.ca_key,
                                  detached=self.detached)
        try:
            self.real_node.start(timeout=self.timeout)
        finally:
            self._save_state()
        with self.api_client() as api:
            self.real_node.wait_ready(api, self.timeout, self.processes)
        self.timings["real-node"] = time.monotonic() - t

    def _spawn(
        self, name: str, argv: list[str], env: dict[str, str] | None = None
    ) -> ManagedProcess:
        full_env = dict(os.environ)
        full_env.pop("KUBECONFIG", None)
        # Loopback traffic must never go through a proxy from the environment.
        full_env["NO_PROXY"] = full_env["no_proxy"] = "127.0.0.1,localhost,::1"
        full_env.update(env or {})
        proc = ManagedProcess(
            name,
            argv,
            self.workdir / "logs" / f"{name}.log",
            env=full_env,
            die_with_parent=not self.detached,
        )
        self.processes.append(proc.start())
        self._save_state()
        return proc

    def _wait_nodes(self, api: Any, names: list[str], timeout: float) -> None:
        kwok = next((p for p in self.processes if p.name == "kwok"), None)
        wait_until(
            lambda: not unready_nodes(api, names),
            timeout=timeout,
            interval=0.2,
            what=f"nodes {', '.join(names)} to be Ready and untainted",
            watched=self.processes,
            blame=kwok,
        )

    def _wait_default_service_account(self, api: Any, kcm: ManagedProcess) -> None:
        """Pods need the namespace's `default` ServiceAccount (made by the KCM)."""
        from kubernetes import client

        core = client.CoreV1Api(api)
        wait_until(
            lambda: bool(core.list_namespaced_service_account("default").items),
            timeout=self.timeout,
            what="the default ServiceAccount",
            watched=self.processes,
            blame=kcm,
        )

    def _all_tails(self) -> str:
        return "\n".join(format_tail(p.name, p.log_path, 15) for p in self.processes)

    # --- command lines ---------------------------------------------------

    def _etcd_argv(self, tools: build.Toolset, ports: dict[str, int]) -> list[str]:
        _sweep_stale_etcd_dirs()
        self._etcd_dir = Path(tempfile.mkdtemp(prefix=ETCD_DIR_PREFIX, dir=_tmpfs_base()))
        client = f"http://127.0.0.1:{ports['etcd']}"
        peer = f"http://127.0.0.1:{ports['etcd-peer']}"
        return [
            str(tools.binary("etcd")),
            "--name=default",
            f"--data-dir={self._etcd_dir}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=default={peer}",
            "--initial-cluster-state=new",
            "--auto-compaction-retention=1",
            "--quota-backend-bytes=8589934592",
            "--logger=zap",
            "--log-level=warn",
        ]

    def _apiserver_argv(self, tools: build.Toolset, pki: Pki, ports: dict[str, int]) -> list[str]:
        return [
            str(tools.binary("kube-apiserver")),
            f"--etcd-servers=http://127.0.0.1:{ports['etcd']}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={ports['apiserver']}",
            f"--cert-dir={self.workdir / 'apiserver'}",
            f"--tls-cert-file={pki.serving_cert}",
            f"--tls-private-key-file={pki.serving_key}",
            f"--client-ca-file={pki.ca_cert}",
            "--authorization-mode=Node,RBAC",
            f"--service-account-key-file={pki.sa_pub}",
            f"--service-account-signing-key-file={pki.sa_key}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allow-privileged=true",
            # The Endpoints of the `kubernetes` Service would be 127.0.0.1,
            # which validation rejects (loopback); nothing runs in pods here.
            "--endpoint-reconciler-type=none",
            # Aggregation layer / delegated authentication: the controller
            # manager and the scheduler read this CA from the
            # extension-apiserver-authentication ConfigMap.
            f"--requestheader-client-ca-file={pki.ca_cert}",
            f"--requestheader-allowed-names={FRONT_PROXY_CN}",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={pki.client_files('front-proxy')[0]}",
            f"--proxy-client-key-file={pki.client_files('front-proxy')[1]}",
            # One client, two cores: queueing and fairness only add latency.
            "--enable-priority-and-fairness=false",
            "--max-requests-inflight=0",
            "--max-mutating-requests-inflight=0",
            "--profiling=false",
            # Logs are fetched from the node's InternalIP (a loopback address), never
            # from its Hostname (the node's name: a DNS lookup).
            "--kubelet-preferred-address-types=InternalIP",
            # A real node's kubelet authenticates the API server by this certificate.
            f"--kubelet-client-certificate={pki.client_files('kubelet-client')[0]}",
            f"--kubelet-client-key={pki.client_files('kubelet-client')[1]}",
        ]

    def _component_common(self, pki: Pki, port: int, kubeconfig: Path) -> list[str]:
        return [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            f"--tls-cert-file={pki.serving_cert}",
            f"--tls-private-key-file={pki.serving_key}",
            f"--authorization-always-allow-paths={ALWAYS_ALLOW}",
            "--profiling=false",
        ]

    def _kcm_argv(
        self, tools: build.Toolset, pki: Pki, ports: dict[str, int], kubeconfigs: dict[str, Path]
    ) -> list[str]:
        return [
            str(tools.binary("kube-controller-manager")),
            *self._component_common(pki, ports["kcm"], kubeconfigs["controller-manager"]),
            f"--root-ca-file={pki.ca_cert}",
            f"--service-account-private-key-file={pki.sa_key}",
            "--use-service-account-credentials=true",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--cluster-signing-cert-file={pki.ca_cert}",
            f"--cluster-signing-key-file={pki.ca_key}",
            *CLIENT_RATE,
        ]

    def _scheduler_argv(
        self, tools: build.Toolset, pki: Pki, ports: dict[str, int], kubeconfigs: dict[str, Path]
    ) -> list[str]:
        return [
            str(tools.binary("kube-scheduler")),
            *self._component_common(pki, ports["scheduler"], kubeconfigs["scheduler"]),
            *CLIENT_RATE,
        ]

    def _kwok_argv(
        self, tools: build.Toolset, kubeconfigs: dict[str, Path], pki: Pki
    ) -> list[str]:
        return [
            str(tools.binary("kwok")),
            f"--kubeconfig={kubeconfigs['kwok']}",
            *[f"--config={stage}" for stage in tools.stage_files()],
            f"--config={self._write_kwok_logs()}",
            # Pods annotated to fail as a kubelet reports it (ImagePullBackOff...).
            f"--config={write_simulation_stages(self.workdir)}",
            f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION_SELECTOR}",
            "--node-lease-duration-seconds=40",
            f"--cidr={POD_CIDR}",
            # The kubelet API (HTTPS: the API server speaks nothing else to kubelets).
            f"--server-address={KUBELET_ADDRESS}:{self.kubelet_port}",
            f"--tls-cert-file={pki.serving_cert}",
            f"--tls-private-key-file={pki.serving_key}",
        ]

    def _write_kwok_logs(self) -> Path:
        """A ClusterLogs rule: every container's log (current and previous) is FAKE_LOG_LINES."""
        log = self.workdir / "kwok-container.log"
        log.write_text("".join(f"2026-01-01T00:00:0{i}.000000000Z stdout F {line}\n"
                               for i, line in enumerate(FAKE_LOG_LINES)))
        rule = {
            "apiVersion": "kwok.x-k8s.io/v1alpha1",
            "kind": "ClusterLogs",
            "metadata": {"name": "fake-logs"},
            "spec": {"logs": [{"logsFile": str(log), "previousLogsFile": str(log)}]},
        }
        path = self.workdir / "kwok-logs.yaml"
        path.write_text(json.dumps(rule) + "\n")  # JSON is YAML
        return path
