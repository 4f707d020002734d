"""node-prep: is every host fit for the node stages, and is swap off?

Checks: OS facts (distro, kernel, arch), root through sudo (the connection
proves it), the commands the node layer relies on, clock synchronisation
(a warning: TLS and etcd break on skewed clocks, but it is not ours to fix),
an active firewall (per ``node_prep.firewall``). Changes: swap off now and
commented out of /etc/fstab (``node_prep.swap``).

The /data/k8s directories are made by the storage stage, AFTER the shared
file system is mounted: made here, they would land on the local disk and be
hidden by the mount.
"""

from __future__ import annotations

from cubeinstall.core.change import Change
from cubeinstall.core.context import RunContext
from cubeinstall.remote.edits import CommentOut
from cubeinstall.remote.facts import ActiveFirewalls, ClockSync, CommandPaths, OsFacts
from cubeinstall.remote.host import facts_of
from cubeinstall.remote.operations import Run, SwapOff
from cubeinstall.remote.shell import join
from cubeinstall.remote.stage import node_stage
from cubeinstall.site.model import Site
from cubeinstall.site.stages import Layer
from cubeinstall.stages.contract import REMOVAL_KEPT

STAGE = "node-prep"

# The commands the operations' scripts use, and the package that ships them.
REQUIRED_COMMANDS = {
    "base64": "coreutils", "sha256sum": "coreutils", "install": "coreutils", "find": "findutils",
    "mount": "mount (Debian) / util-linux (RHEL)",
    "findmnt": "util-linux", "swapoff": "mount (Debian) / util-linux (RHEL)",
}
SUPPORTED_ARCHES = ("x86_64", "aarch64")
# An uncommented fstab line whose third field (the type) is swap.
FSTAB_SWAP_LINE = r"^\s*[^#\s]\S*\s+\S+\s+swap(\s|$)"


def prepare(host, site: Site) -> None:
    swap = [SwapOff(), CommentOut("/etc/fstab", FSTAB_SWAP_LINE, summary="swap entries commented out")
            ] if site.node_prep.swap == "off" else []
    firewalls = [ActiveFirewalls()] if site.node_prep.firewall != "ignore" else []
    facts = host.facts([OsFacts(), CommandPaths(tuple(REQUIRED_COMMANDS)), ClockSync(),
                        *firewalls, *facts_of(swap)])
    os_info = facts[OsFacts()]
    host.changes.append(Change(
        f"{host.name}:os", "unchanged",
        f"{os_info.pretty}, kernel {os_info.kernel}, {os_info.arch}; "
        f"root via {host.connection.sudo_mode}"))
    if os_info.arch not in SUPPORTED_ARCHES:
        host.warn(f"architecture {os_info.arch} is not one the platform's images are built for "
                  f"({', '.join(SUPPORTED_ARCHES)})")

    missing = [name for name, path in facts[CommandPaths(tuple(REQUIRED_COMMANDS))].items()
               if not path]
    if missing:
        packages = sorted({REQUIRED_COMMANDS[name] for name in missing})
        raise host.fail(f"required commands not found: {', '.join(missing)}",
                        hint=f"install {'; '.join(packages)}")

    if facts[ClockSync()] != "yes":
        state = "not synchronised" if facts[ClockSync()] == "no" else "of unknown sync state"
        host.warn(f"clock is {state}: enable chrony or systemd-timesyncd "
                  "(certificates and etcd need clocks within seconds of each other)")

    operations = list(swap)
    active = facts[ActiveFirewalls()] if firewalls else ()
    if active and site.node_prep.firewall == "disable":
        operations += [Run(f"firewall {name}", f"systemctl disable --now {join(name)}",
                           f"stop and disable {name}") for name in active]
    elif active and site.node_prep.firewall == "check":
        host.warn(f"firewall {', '.join(active)} is active: open the Kubernetes and platform "
                  "ports, or set node_prep.firewall: disable")
    host.converge(operations)


plan, apply = node_stage(STAGE, prepare)


def remove(ctx: RunContext, purge: bool, restore_node_files: bool) -> list[Change]:
    """Uninstall gives node files back only when asked (this stage does it for every
    node stage, since uninstall runs it last); /data/k8s is never wiped."""
    if not restore_node_files:
        return [Change(STAGE, "skip", REMOVAL_KEPT[Layer.NODE])]
    from cubeinstall.remote.restore import restore_node_files as restore

    return restore(ctx, write=not ctx.dry_run)


def describe(site: Site) -> list[Change]:
    """What the stage does, without connecting (offline plan)."""
    what = "check OS, sudo, commands, clock"
    if site.node_prep.swap == "off":
        what += "; swap off now and in /etc/fstab"
    return [Change(f"{node.name}", "run", what) for node in site.nodes]
