"""gpu-runtime: the NVIDIA container runtime as the default of docker or containerd.

On nodes with role gpu: the driver answers (nvidia-smi: driver version, GPU
count) and nvidia-container-runtime is installed. docker: /etc/docker/daemon.json
is MERGED — every key already there is kept — with default-runtime nvidia and the
nvidia runtime entry (insecure-registries belongs to registry-trust, which merges
other keys of the same file); an invalid existing file is refused and left alone.
containerd: ``nvidia-ctk runtime configure`` writes the runtime into its config.
The daemon restarts only when its file changed (or it is not running with
it yet), and the stage checks that the daemon reports the nvidia runtime.
"""

from __future__ import annotations

import re

from cubeinstall.core.change import Change
from cubeinstall.remote.edits import EnsureJsonMerge
from cubeinstall.remote.facts import (
    CommandPaths,
    ContainerdConfig,
    DockerRuntimes,
    FileText,
    Gpus,
)
from cubeinstall.remote.host import facts_of
from cubeinstall.remote.operations import EnsureDir, Run, backup_dest
from cubeinstall.remote.runtime_paths import CONTAINERD_TOML, DAEMON_JSON
from cubeinstall.remote.shell import q
from cubeinstall.remote.stage import node_stage
from cubeinstall.site.model import Site

STAGE = "gpu-runtime"
TOOLKIT = ("nvidia-container-toolkit (Debian/Ubuntu: apt-get install nvidia-container-toolkit; "
           "RHEL/Rocky: dnf install nvidia-container-toolkit) from NVIDIA's repository")
# containerd 1.x writes plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia,
# 2.x plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.nvidia.
_CONTAINERD_NVIDIA = re.compile(r"^\s*\[plugins\.\S*containerd\.runtimes\.nvidia\]", re.MULTILINE)
_CONTAINERD_DEFAULT = re.compile(r"^\s*default_runtime_name\s*=\s*[\"']nvidia[\"']", re.MULTILINE)


def gpu_nodes(site: Site):
    return tuple(node for node in site.nodes if node.is_gpu)


def docker_patch(runtime_path: str) -> dict:
    """Only the nvidia keys: the other keys of daemon.json belong to other stages."""
    return {"default-runtime": "nvidia",
            "runtimes": {"nvidia": {"path": runtime_path, "runtimeArgs": []}}}


def containerd_has_nvidia(config: str | None) -> bool:
    return bool(config and _CONTAINERD_NVIDIA.search(config) and _CONTAINERD_DEFAULT.search(config))


def configure(host, site: Site) -> None:
    tools = ("nvidia-container-runtime", "nvidia-ctk")
    # The runtime's facts come with the first read: a host with nothing to change is one
    # round trip. (What an operation reads does not depend on the runtime's path.)
    runtime_facts = ([*facts_of(_docker_files("")), DockerRuntimes()] if site.runtime == "docker"
                     else [FileText(CONTAINERD_TOML), ContainerdConfig()])
    facts = host.facts([Gpus(), CommandPaths(tools), *runtime_facts])
    gpus = facts[Gpus()]
    if gpus is None:
        raise host.fail("nvidia-smi does not answer: the NVIDIA driver is not installed or "
                        "not loaded", hint="install the driver for this GPU and reboot, then "
                                           "check that nvidia-smi lists the GPUs")
    driver, names = gpus
    host.changes.append(Change(f"{host.name}:gpu", "unchanged",
                               f"driver {driver}, {len(names)} GPU(s): {', '.join(names)}"))
    paths = facts[CommandPaths(tools)]
    if not paths["nvidia-container-runtime"]:
        raise host.fail("nvidia-container-runtime not found", hint=f"install {TOOLKIT}")
    if site.runtime == "docker":
        _docker(host, paths["nvidia-container-runtime"])
    else:
        _containerd(host, paths["nvidia-ctk"])


def _docker_files(runtime_path: str) -> list:
    return [EnsureDir("/etc/docker", mode=None, owner=None, group=None),
            EnsureJsonMerge(DAEMON_JSON, docker_patch(runtime_path),
                            summary="nvidia runtime (default) in docker")]


def _docker(host, runtime_path: str) -> None:
    files = _docker_files(runtime_path)
    facts = host.facts([*facts_of(files), DockerRuntimes()])
    file_changed = host.decide(files[-1], facts).changed
    operations = list(files)
    if file_changed or not _docker_reports_nvidia(facts[DockerRuntimes()]):
        reason = "daemon.json changed" if file_changed else "docker is not running with the nvidia runtime yet"
        operations.append(Run("docker", "systemctl restart docker", f"restart docker ({reason})"))
    host.converge(operations, then=[DockerRuntimes()])  # written, restarted, asked: one round trip
    if host.write:
        running = host.fact(DockerRuntimes())
        if not _docker_reports_nvidia(running):
            shown = f"default {running[0]}, runtimes {', '.join(running[1])}" if running else "no answer"
            raise host.fail(f"docker info does not report nvidia as the default runtime ({shown})",
                            hint="check `journalctl -u docker` on the host")


def _docker_reports_nvidia(running) -> bool:
    return running is not None and running[0] == "nvidia" and "nvidia" in running[1]


def _containerd(host, nvidia_ctk: str | None) -> None:
    facts = host.facts([FileText(CONTAINERD_TOML), ContainerdConfig()])
    if not containerd_has_nvidia(facts[FileText(CONTAINERD_TOML)]):
        if not nvidia_ctk:
            raise host.fail("nvidia-ctk not found: cannot add the nvidia runtime to containerd",
                            hint=f"install {TOOLKIT}")
        script = (
            f"dest={q(CONTAINERD_TOML)}; backup=\n"
            f'if [ -e "$dest" ]; then\n{backup_dest()}fi\n'
            'before=$(sha256sum < "$dest" 2>/dev/null || true)\n'
            'nvidia-ctk runtime configure --runtime=containerd --set-as-default --config="$dest"\n'
            'if [ "$before" != "$(sha256sum < "$dest")" ]; then systemctl restart containerd; '
            'echo "containerd restarted"\n'
            'elif [ -n "$backup" ]; then rm -f -- "$backup"; fi'
        )
        host.converge([Run(CONTAINERD_TOML, script, "nvidia-ctk runtime configure "
                           "--runtime=containerd --set-as-default; restart containerd if it changed")],
                      then=[ContainerdConfig()])
    elif not containerd_has_nvidia(facts[ContainerdConfig()]):
        host.converge([Run("containerd", "systemctl restart containerd",
                           "restart containerd (not running with the nvidia runtime yet)")],
                      then=[ContainerdConfig()])
    if host.write and not containerd_has_nvidia(host.fact(ContainerdConfig())):
        raise host.fail("containerd config dump does not show nvidia as the default runtime",
                        hint=f"check {CONTAINERD_TOML} and `journalctl -u containerd` on the host")


plan, apply = node_stage(STAGE, configure, nodes=gpu_nodes)


def describe(site: Site) -> list[Change]:
    what = ("merge the nvidia runtime into /etc/docker/daemon.json" if site.runtime == "docker"
            else "add the nvidia runtime to containerd")
    return [Change(node.name, "run", what) for node in gpu_nodes(site)]
