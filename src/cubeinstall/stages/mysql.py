"""mysql: the in-cluster MySQL 8 of PLATFORM-FACTS item 8, on mysql=true nodes.

Deployment ``mysql`` (one replica, Recreate: two mysqld on one data directory
would corrupt it), Service ``mysql-service``, the data on the shared storage
(PV ``infra-mysql-pv`` bound to ``infra-mysql-pvc``), ``mysql-configmap``. The
root password reaches the pod only through Secret ``mysql-root-password``,
built here; mysqld reads it on first start of an empty data directory only,
so changing it later in site.yaml does not change the live root password.

Image: mysql 8.0.44, the 8.0 line's security fixes over the 8.0.32 of the
2026 release, same major and data format (an 8.0.32 data directory upgrades
in place; no 8.4 LTS jump, whose default disables mysql_native_password).
MySQL 8.0 itself reaches end of life in April 2026: moving to 8.4 is a
separate step (authentication plugin of existing users, a dump or an upgrade).
"""

from __future__ import annotations

from cubeinstall.core.errors import ConfigError
from cubeinstall.render.engine import render_stage
from cubeinstall.site.model import Site
from cubeinstall.stages.workloads import (
    host_volume,
    opaque_secret,
    pod_values,
    roll_on_config_change,
)

STAGE = "mysql"
NAMESPACE = "infra"
IMAGE = "mysql:8.0.44"
ROOT_SECRET = "mysql-root-password"


def render(site: Site) -> list[dict]:
    if site.mysql.user != "root":
        raise ConfigError(
            f"mysql.user is {site.mysql.user!r}, but an in-cluster MySQL is set up as root",
            hint="write mysql.user: root (mysql.app_user adds the platform's own user)")
    objects = render_stage(STAGE, namespace=NAMESPACE, image=IMAGE, root_secret=ROOT_SECRET,
                           **pod_values(site, STAGE))
    objects += host_volume(site, pv_name="infra-mysql-pv", namespace=NAMESPACE,
                           claim="infra-mysql-pvc", size=site.mysql.storage_size,
                           subpath="infra/mysql")
    objects.append(opaque_secret(ROOT_SECRET, NAMESPACE,
                                 {"MYSQL_ROOT_PASSWORD": site.mysql.password.reveal()}))
    return roll_on_config_change(objects)
