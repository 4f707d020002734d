"""MySQL and Redis images for the real node, made from this machine's Debian packages.

The site's in-cluster MySQL and Redis run the images ``mysql:8.0.44`` and
``redis:7.4.6``, rewritten to the site registry.  No outside registry is
reachable here, so the tests push stand-ins under those names into their own
registry and the real node pulls them like any image:

- ``mysql``: MariaDB from Debian (mariadb-server-core + the client tools the
  probes call) with an entrypoint keeping the official image's contract: on an
  empty /var/lib/mysql the root password is MYSQL_ROOT_PASSWORD (root@localhost
  and root@'%'); files mounted in /etc/mysql/conf.d/ are read; the log goes to
  stderr, so ``kubectl logs`` shows it.  MariaDB 10.11 reads the site's
  cube.cnf as it is (it accepts MySQL's default-authentication-plugin with a
  warning; its accounts use mysql_native_password anyway); an unknown option
  stops the server, as it would stop MySQL.
- ``redis``: Debian's redis-server and redis-cli (7.0): the site's pod runs
  ``redis-server /etc/redis/redis.conf`` itself, as uid 999 on a read-only root.

Each image is the package files (``dpkg -L``), the shared libraries they load
(``ldd``) and busybox-static for a shell: 17 MB for Redis, about 100 MB for
MariaDB; built in seconds.  Built images are cached as OCI layouts under
``<testcluster cache>/<version>/images/<name>/``, keyed by the package versions
and this file, so a warm run only pushes (``skopeo copy``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from . import build, oci

SHELL_PACKAGE = "busybox-static"


@dataclass(frozen=True)
class TestImage:
    name: str
    tag: str  # the tag the site pulls (its image is rewritten to <registry>/<project>/<name>:<tag>)
    packages: tuple[str, ...]  # every file of these
    extra_files: tuple[str, ...]  # and these host files of other packages
    config: dict
    files: dict[str, tuple[str, int]]  # path -> (text, mode) written into the image
    dirs: dict[str, int]


MYSQL_ENTRYPOINT = r"""#!/bin/sh
# cubeinstall test image: MariaDB from Debian standing in for the official mysql image
# (tests/cluster/testimages.py). Contract kept: an empty /var/lib/mysql is initialised with
# root@localhost and root@'%' identified by MYSQL_ROOT_PASSWORD; /etc/mysql/conf.d/*.cnf are read.
set -eu
DATADIR=/var/lib/mysql
mkdir -p /run/mysqld
if [ "${1:-}" = "mariadbd" ] && [ ! -d "$DATADIR/mysql" ]; then
  if [ -z "${MYSQL_ROOT_PASSWORD:-}" ]; then
    echo "error: database is uninitialized and password option is not specified" >&2
    echo "  You need to specify MYSQL_ROOT_PASSWORD" >&2
    exit 1
  fi
  echo "entrypoint: initializing database in $DATADIR"
  mariadb-install-db --user=root --datadir="$DATADIR" --auth-root-authentication-method=normal \
    --skip-test-db --skip-name-resolve --force > /run/mysqld/install.log 2>&1 \
    || { cat /run/mysqld/install.log >&2; exit 1; }
  mariadbd --user=root --datadir="$DATADIR" --skip-networking --socket=/run/mysqld/init.sock &
  pid=$!
  i=0
  until mariadb-admin --socket=/run/mysqld/init.sock -uroot ping > /dev/null 2>&1; do
    i=$((i + 1)); [ "$i" -lt 600 ] || { echo "error: the init server did not start" >&2; exit 1; }
    sleep 0.1
  done
  pw=$(printf '%s' "$MYSQL_ROOT_PASSWORD" | sed -e 's/\\/\\\\/g' -e "s/'/\\\\'/g")
  mariadb --socket=/run/mysqld/init.sock -uroot <<SQL
DELETE FROM mysql.global_priv WHERE User = 'root' AND Host <> 'localhost';
FLUSH PRIVILEGES;
ALTER USER 'root'@'localhost' IDENTIFIED BY '$pw';
CREATE USER 'root'@'%' IDENTIFIED BY '$pw';
GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;
FLUSH PRIVILEGES;
SQL
  kill "$pid"
  wait "$pid" || true
  echo "entrypoint: database initialized"
fi
exec "$@"
"""

MYSQL_CNF = """[mysqld]
user = root
datadir = /var/lib/mysql
socket = /run/mysqld/mysqld.sock
pid-file = /run/mysqld/mysqld.pid
skip-log-bin

[client]
socket = /run/mysqld/mysqld.sock

!includedir /etc/mysql/conf.d/
"""

PASSWD = "root:x:0:0:root:/root:/bin/sh\nredis:x:999:999:redis:/data:/bin/sh\n"
GROUP = "root:x:0:\nredis:x:999:\n"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

IMAGES = {
    "mysql": TestImage(
        name="mysql", tag="8.0.44",
        packages=("mariadb-server-core",),
        extra_files=("/usr/bin/mariadb", "/usr/bin/mysql", "/usr/bin/my_print_defaults",
                     "/usr/bin/mariadb-admin", "/usr/bin/mysqladmin"),
        config={"Entrypoint": ["/usr/local/bin/docker-entrypoint.sh"], "Cmd": ["mariadbd"],
                "Env": [f"PATH={PATH}"], "ExposedPorts": {"3306/tcp": {}},
                "Labels": {"cubeinstall.test/stands-in-for": "mysql:8.0.44"}},
        files={"/usr/local/bin/docker-entrypoint.sh": (MYSQL_ENTRYPOINT, 0o755),
               "/etc/mysql/my.cnf": (MYSQL_CNF, 0o644),
               "/etc/passwd": (PASSWD, 0o644), "/etc/group": (GROUP, 0o644)},
        dirs={"/var/lib/mysql": 0o755, "/etc/mysql/conf.d": 0o755, "/run/mysqld": 0o755,
              "/tmp": 0o1777, "/root": 0o700, "/proc": 0o555, "/sys": 0o555, "/dev": 0o755},
    ),
    "redis": TestImage(
        name="redis", tag="7.4.6",
        packages=(),
        extra_files=("/usr/bin/redis-server", "/usr/bin/redis-check-rdb", "/usr/bin/redis-cli"),
        config={"Cmd": ["redis-server"], "Env": [f"PATH={PATH}"], "WorkingDir": "/data",
                "ExposedPorts": {"6379/tcp": {}},
                "Labels": {"cubeinstall.test/stands-in-for": "redis:7.4.6"}},
        files={"/etc/passwd": (PASSWD, 0o644), "/etc/group": (GROUP, 0o644)},
        dirs={"/data": 0o777, "/etc/redis": 0o755, "/tmp": 0o1777, "/proc": 0o555, "/sys": 0o555, "/dev": 0o755},
    ),
}


class TestImageError(RuntimeError):
    """A test image could not be built or pushed."""


def _run(argv: list[str]) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise TestImageError(f"{' '.join(argv)} failed: {result.stderr.strip()}")
    return result.stdout


def _package_versions(image: TestImage) -> str:
    packages = [*image.packages, SHELL_PACKAGE]
    for path in image.extra_files:
        packages.append(_run(["dpkg", "-S", path]).split(":", 1)[0])
    out = _run(["dpkg-query", "-W", "-f=${Package} ${Version}\n", *sorted(set(packages))])
    return out


def _package_files(package: str) -> list[str]:
    return [line for line in _run(["dpkg", "-L", package]).splitlines()
            if line.startswith("/") and not line.startswith(("/usr/share/doc", "/usr/share/man"))
            and (os.path.islink(line) or os.path.isfile(line))]


MERGED_USR = ("/bin", "/sbin", "/lib", "/lib64")


def _usr_path(path: str) -> str:
    """``path`` with a leading merged-/usr link resolved (/lib/x -> /usr/lib/x)."""
    for link in MERGED_USR:
        if path.startswith(link + "/"):
            return "/usr" + path
    return path


_LDD_PATH = re.compile(r"(?:=>\s*)?(/\S+)\s+\(0x")


def _libraries(paths: list[str]) -> set[str]:
    libraries: set[str] = set()
    for path in paths:
        if os.path.islink(path) or not os.path.isfile(path):
            continue
        with open(path, "rb") as handle:
            if handle.read(4) != b"\x7fELF":
                continue
        result = subprocess.run(["ldd", path], capture_output=True, text=True, check=False)
        for line in result.stdout.splitlines():
            match = _LDD_PATH.search(line)
            if match:
                libraries.add(match.group(1))
    resolved = set()
    for library in libraries:  # the symlink as named and the file it points to
        resolved.add(library)
        resolved.add(os.path.realpath(library))
    return resolved


def _rootfs_files(image: TestImage) -> dict[str, oci.FileEntry]:
    paths: list[str] = []
    for package in image.packages:
        paths += _package_files(package)
    paths += [p for p in image.extra_files]
    paths += [os.path.realpath(p) for p in image.extra_files if os.path.islink(p)]
    host = oci.files_from_host(sorted(set(paths) | _libraries(paths)))
    # Debian's /bin, /sbin, /lib, /lib64 are links into /usr ("merged /usr"): the image
    # has the same links and every file under its /usr path.
    files: dict[str, oci.FileEntry] = {link: (f"usr{link}", 0o777) for link in MERGED_USR}
    for path, entry in host.items():
        files[_usr_path(path)] = entry
    busybox = shutil.which("busybox") or "/bin/busybox"
    if not Path(busybox).is_file():
        raise TestImageError("busybox not found (apt-get install busybox-static)")
    files["/usr/bin/busybox"] = (Path(busybox).read_bytes(), 0o755)
    for applet in _run([busybox, "--list-full"]).split():  # sh, sed, env ... unless packaged
        target = _usr_path("/" + applet)
        if target not in files:
            files[target] = ("/usr/bin/busybox", 0o777)
    for path, (text, mode) in image.files.items():
        files[path] = (text.encode(), mode)
    return files


def _inputs(image: TestImage) -> str:
    digest = hashlib.sha256()
    for part in (_package_versions(image), json.dumps(image.__dict__, sort_keys=True, default=str),
                 Path(__file__).read_text(), Path(oci.__file__).read_text()):
        digest.update(hashlib.sha256(part.encode()).digest())
    return digest.hexdigest()


def layout(name: str, tools: build.Toolset | None = None) -> Path:
    """The cached OCI layout of test image ``name`` (built when missing or stale)."""
    image = IMAGES[name]
    tools = tools or build.toolset()
    directory = tools.images_dir / name
    stamp = tools.images_dir / f"{name}.stamp"
    inputs = _inputs(image)
    if directory.is_dir() and stamp.is_file() and stamp.read_text() == inputs:
        return directory
    files = _rootfs_files(image)
    oci.write_layout(directory, image.tag, oci.layer(files, image.dirs), image.config)
    stamp.write_text(inputs)
    return directory


def push(name: str, reference: str, *, tools: build.Toolset | None = None,
         creds: tuple[str, str] | None = None) -> None:
    """Push test image ``name`` to ``reference`` (``127.0.0.1:PORT/project/name:tag``).

    TLS is not verified by this push (a loopback test registry); the node verifies it.
    """
    image = IMAGES[name]
    source = f"oci:{layout(name, tools)}:{image.tag}"
    argv = ["skopeo", "copy", "--quiet", "--dest-tls-verify=false"]
    if creds:
        argv.append(f"--dest-creds={creds[0]}:{creds[1]}")
    _run(argv + [source, f"docker://{reference}"])
