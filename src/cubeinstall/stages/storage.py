"""storage: the shared file system mounted at /data/k8s on every node, for good.

CephFS (kernel client) or NFS: an fstab entry with ``_netdev,noatime`` (so it
comes back after a reboot, once the network is up), the CephFS secret in a
0600 file (never on a command line), mounted now if it is not, then checked
mounted with the right type and writable (a probe file created and removed).
With ``mount_at`` the file system is mounted there and /data/k8s becomes a
symlink to it. ``local``: plain directories on each node.

Phases per host: files, fstab and the mount; the platform's directories — on
the mounted file system, which is why they are made here and not in
node-prep. Each phase's changes and the next phase's facts share a round trip,
and a host where nothing changes is read (and probed) in one.
"""

from __future__ import annotations

import re

from cubeinstall.core.change import Change
from cubeinstall.core.errors import ConfigError
from cubeinstall.core.redaction import redact
from cubeinstall.remote.edits import EnsureLine
from cubeinstall.remote.facts import CommandPaths, Mounts, WriteProbe, mount_at
from cubeinstall.remote.host import facts_of
from cubeinstall.remote.operations import (
    EnsureDir,
    EnsureFile,
    EnsureMounted,
    EnsureSymlink,
)
from cubeinstall.remote.stage import node_stage
from cubeinstall.site import platform
from cubeinstall.site.model import NFS, CephFS, Site

STAGE = "storage"
FSTAB = "/etc/fstab"
DEFAULT_OPTIONS = ("_netdev", "noatime")
# Shared by pods running as other users (grafana 472, prometheus 1000).
OPEN_DIRECTORIES = ("monitoring/grafana", "monitoring/prometheus")

HELPERS = {  # type -> (mount helper, fstab types it mounts as, package per family)
    "cephfs": ("mount.ceph", ("ceph",),
               "ceph-common (Debian/Ubuntu: apt-get install ceph-common; RHEL/Rocky: dnf install ceph-common)"),
    "nfs": ("mount.nfs", ("nfs", "nfs4"),
            "the NFS client (Debian/Ubuntu: apt-get install nfs-common; RHEL/Rocky: dnf install nfs-utils)"),
}


def fstab_escape(field: str) -> str:
    """An fstab field: whitespace and backslashes as octal escapes, as mount(8) reads them."""
    return "".join(f"\\{ord(c):03o}" if c in " \t\n\\" else c for c in field)


def mount_dir(site: Site) -> str:
    """Where the file system is mounted (mount_point, or mount_at + a symlink)."""
    return site.storage.mount_at or site.storage.mount_point


def secret_path(storage: CephFS) -> str:
    return f"/etc/ceph/{storage.user}.secret"


def check_values(site: Site) -> None:
    storage = site.storage
    if isinstance(storage, CephFS) and not re.fullmatch(r"[^\s,=/.][^\s,=/]*", storage.user):
        raise ConfigError(f"storage.user {storage.user!r} cannot be a Ceph client name",
                          hint="use the name without 'client.' and without commas, '=', '/' "
                               "or spaces (e.g. admin)")
    for option in storage.options:
        if not option or "," in option or any(c.isspace() for c in option):
            raise ConfigError(f"storage.options item {option!r} must be one mount option "
                              "(no commas or spaces)", hint="list each option as its own item")


def fstab_line(site: Site) -> str:
    storage = site.storage
    options = list(DEFAULT_OPTIONS) + list(storage.options)
    if isinstance(storage, CephFS):
        device, fstype = f"{','.join(storage.monitors)}:{storage.path}", "ceph"
        options = [f"name={storage.user}", f"secretfile={secret_path(storage)}", *options]
    else:
        assert isinstance(storage, NFS)
        device, fstype = f"{storage.server}:{storage.export}", "nfs"
    fields = (device, mount_dir(site), fstype, ",".join(dict.fromkeys(options)))
    return " ".join(fstab_escape(f) for f in fields) + " 0 0"


def fstab_key(site: Site) -> str:
    """Regex of uncommented fstab lines that mount something at our mount dir."""
    return rf"^\s*[^#\s]\S*\s+{re.escape(fstab_escape(mount_dir(site)))}(\s|$)"


def mount_storage(host, site: Site) -> None:
    storage = site.storage
    where = mount_dir(site)
    files = _file_operations(site)
    directories = [EnsureDir(f"{storage.mount_point}/{sub}",
                             mode=0o777 if sub in OPEN_DIRECTORIES else 0o755)
                   for sub in platform.DATA_DIRECTORIES]
    # Written to only by runs that write; asked with the first read, it stands if that
    # run then finds nothing to change (else it is asked again after the changes).
    probe = [WriteProbe(f"{storage.mount_point}/.cubeinstall-probe-{host.name}")] if host.write else []
    if storage.type not in HELPERS:  # local: plain directories
        host.facts([*facts_of([*files, *directories]), *probe])  # one round trip for all phases
        host.converge(files, then=[*facts_of(directories), *probe])
    else:
        _mount(host, site, where, files, [Mounts(), *facts_of(directories), *probe])
    if probe:
        _check_writable(host, probe[0], storage.mount_point)
    host.converge(directories)


def _mount(host, site: Site, where: str, files: list, after: list) -> None:
    """The files, the fstab entry and the mount; ``after``: the facts read once they are done."""
    helper, fstypes, package = HELPERS[site.storage.type]
    mounted = EnsureMounted(where, fstypes)
    found = host.facts([CommandPaths((helper,)), *facts_of([*files, mounted]), *after])
    if not found[CommandPaths((helper,))][helper]:
        raise host.fail(f"{helper} not found, so {site.storage.type} cannot be mounted",
                        hint=f"install {package}")
    host.decide(mounted, found)  # something else mounted there: refuse before touching fstab
    # Writing files changes no mount, so the mount is decided with them, and runs after them.
    *written, mount = host.converge([*files, mounted], then=after)
    if any(o.changed and o.target == FSTAB for o in written) and not mount.changed:
        host.warn(f"the fstab entry for {where} changed while it is mounted: the new "
                  "options apply at the next mount (remount it or reboot)")
    if host.write:  # mounted with the right type now?
        now = mount_at(host.facts(after)[Mounts()], where)
        if now is None or now.fstype not in fstypes:
            shown = f"a {now.fstype} mount" if now else "nothing mounted"
            raise host.fail(f"after mounting, {where} shows {shown}, not {'/'.join(fstypes)}",
                            hint="check dmesg on the host for the client's error")


def _file_operations(site: Site) -> list:
    storage = site.storage
    where = mount_dir(site)
    operations = []
    if isinstance(storage, CephFS):
        operations += [EnsureDir("/etc/ceph"),
                       EnsureFile(secret_path(storage), storage.secret.reveal().encode() + b"\n",
                                  mode=0o600, secret=True)]
    if storage.type in HELPERS:
        # The mount point's own mode belongs to the mounted file system: leave it.
        operations += [EnsureDir(where, mode=None, owner=None, group=None),
                       EnsureLine(FSTAB, fstab_line(site), replaces=fstab_key(site),
                                  summary=f"{storage.type} entry for {where}")]
    else:
        operations.append(EnsureDir(where))
    if storage.mount_at:
        operations.append(EnsureSymlink(storage.mount_point, storage.mount_at))
    return operations


def _check_writable(host, probe: WriteProbe, mount_point: str) -> None:
    """Mounted is not enough: root must be able to write there (read-only mount, caps)."""
    writable, error = host.fact(probe)
    if not writable:
        raise host.fail(f"write probe in {mount_point} failed: {redact(error) or 'no output'}",
                        hint="the file system is mounted read-only or refuses root "
                             "(CephFS: check the client's caps)")


plan, apply = node_stage(STAGE, mount_storage, check=check_values)


def describe(site: Site) -> list[Change]:
    storage = site.storage
    what = (f"mount {storage.type} at {mount_dir(site)} (fstab: {fstab_line(site)})"
            if storage.type in HELPERS else f"directories under {storage.mount_point}")
    return [Change(node.name, "run", what) for node in site.nodes]
