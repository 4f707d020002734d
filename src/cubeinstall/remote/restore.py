"""Give node files back as they were before cubeinstall first changed them.

Every file a node stage replaced was kept as ``<file>.cubeinstall-<UTC>.bak``;
the oldest backup is the host's own version. Restoring writes it back
atomically (copy beside, then rename) and is itself idempotent.
"""

from __future__ import annotations

from cubeinstall.remote.host import Host
from cubeinstall.remote.operations import backup_dest
from cubeinstall.remote.probe import ask_nodes
from cubeinstall.remote.shell import q
from cubeinstall.stages.base import Change, RunContext

# Files the node stages edit in place (others they create are left in place), and the
# service that reads each one: restarted when its file is given back.
EDITED_FILES = {"/etc/fstab": None, "/etc/docker/daemon.json": "docker",
                "/etc/containerd/config.toml": "containerd"}


def _script(path: str, write: bool) -> str:
    # The oldest backup by its stamp, then its same-second number: a plain name sort would
    # put "<stamp>-1.bak" before "<stamp>.bak". The file given back is itself backed up first.
    action = ('{ dest="$f"; ' + backup_dest() + '} >/dev/null && '
              'cp -p -- "$b" "$f.cubeinstall-restore" && mv -f -- "$f.cubeinstall-restore" "$f" && '
              if write else "")
    return (
        f"f={q(path)}\n"
        'b=$(for x in "$f".cubeinstall-*.bak; do\n'
        '  [ -e "$x" ] || continue; k=${x##*.cubeinstall-}; k=${k%.bak}\n'
        '  case $k in *-*) ;; *) k="$k-0" ;; esac; printf \'%s %s\\n\' "$k" "$x"\n'
        'done | sort -t- -k1,1 -k2,2n | head -n 1 | cut -d" " -f2-)\n'
        'if [ -z "$b" ]; then echo "none"\n'
        'elif cmp -s -- "$b" "$f"; then echo "same $b"\n'
        f'else {action}echo "restore $b"; fi\n'
    )


def restore_node_files(ctx: RunContext, write: bool) -> list[Change]:
    changes: list[Change] = []

    def question(host: Host) -> str | None:
        for path, service in EDITED_FILES.items():
            verdict, _, backup = host.check(f"restore {path}", _script(path, write)).strip().partition(" ")
            if verdict == "restore":
                restarted = f"; {service} restarted" if service else ""
                changes.append(Change(f"{host.name}:{path}", "update",
                                      f"restored from {backup}{restarted if write else ''}"))
                if write and service:
                    host.check(f"restart {service}", f"systemctl restart {service}")
            elif verdict == "same":
                changes.append(Change(f"{host.name}:{path}", "unchanged", f"already as {backup}"))
        return None

    for node, problem in ask_nodes(ctx, question):
        if problem:
            changes.append(Change(f"{node}", "skip", f"not restored: {problem}"))
    return changes
