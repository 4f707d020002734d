"""Give node files back as they were before cubeinstall first changed them.

Every file a node stage replaced was kept as ``<file>.cubeinstall-<UTC>.bak``;
the oldest backup is the host's own version. Restoring writes it back
atomically (copy beside, then rename) and is itself idempotent.
"""

from __future__ import annotations

from cubeinstall.core.change import Change
from cubeinstall.core.context import RunContext
from cubeinstall.remote.host import Host
from cubeinstall.remote.operations import backup_dest
from cubeinstall.remote.probe import ask_nodes
from cubeinstall.remote.runtime_paths import (
    CONTAINERD_TOML,
    DAEMON_JSON,
    registry_files,
)
from cubeinstall.remote.shell import q
from cubeinstall.site.model import Site

# Files the node stages edit in place (others they create are left in place), and the
# service that reads each one: restarted when its file is given back.
EDITED_FILES = {"/etc/fstab": None, DAEMON_JSON: "docker", CONTAINERD_TOML: "containerd"}


def edited_files(site: Site) -> dict[str, str | None]:
    """EDITED_FILES and, with a site registry, the files registry-trust may have replaced
    (read at every pull: no restart)."""
    registry = dict.fromkeys(registry_files(site.registry.host)) if site.registry else {}
    return {**EDITED_FILES, **registry}


def _script(files: dict[str, str | None], write: bool) -> str:
    """One script for every edited file: a line "<path> none|same|restore [backup]" each.
    Writing, a restored file's service restarts right after it (a failure ends the script)."""
    return "".join(_file_script(path, service, write) for path, service in files.items())


def _file_script(path: str, service: str | None, write: bool) -> str:
    # The oldest backup by its stamp, then its same-second number: a plain name sort would
    # put "<stamp>-1.bak" before "<stamp>.bak". The file given back is itself backed up first.
    action = ('{ dest="$f"; ' + backup_dest() + '} >/dev/null && '
              'cp -p -- "$b" "$f.cubeinstall-restore" && mv -f -- "$f.cubeinstall-restore" "$f" || exit 1\n  '
              if write else "")
    restart = f"systemctl restart {q(service)} || exit 1\n  " if write and service else ""
    return (
        f"f={q(path)}\n"
        'b=$(for x in "$f".cubeinstall-*.bak; do\n'
        '  [ -e "$x" ] || continue; k=${x##*.cubeinstall-}; k=${k%.bak}\n'
        '  case $k in *-*) ;; *) k="$k-0" ;; esac; printf \'%s %s\\n\' "$k" "$x"\n'
        'done | sort -t- -k1,1 -k2,2n | head -n 1 | cut -d" " -f2-)\n'
        'if [ -z "$b" ]; then echo "$f none"\n'
        'elif cmp -s -- "$b" "$f"; then echo "$f same $b"\n'
        f'else {action}{restart}echo "$f restore $b"; fi\n'
    )


def restore_node_files(ctx: RunContext, write: bool) -> list[Change]:
    """Every edited file given back from its oldest backup: one round trip per host."""
    changes: list[Change] = []
    files = edited_files(ctx.site)

    def question(host: Host) -> str | None:
        script = _script(files, write)
        output = host.change("restore node files", script) if write else host.check(
            "look for node file backups", script)
        for line in output.splitlines():
            path, _, rest = line.partition(" ")
            verdict, _, backup = rest.partition(" ")
            if verdict == "restore":
                service = files.get(path)
                restarted = f"; {service} restarted" if service and write else ""
                changes.append(Change(f"{host.name}:{path}", "update",
                                      f"restored from {backup}{restarted}"))
            elif verdict == "same":
                changes.append(Change(f"{host.name}:{path}", "unchanged", f"already as {backup}"))
        return None

    for node, problem in ask_nodes(ctx, question, write=write):
        if problem:
            changes.append(Change(f"{node}", "skip", f"not restored: {problem}"))
    return changes
