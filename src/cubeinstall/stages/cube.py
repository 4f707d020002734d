"""cube: the cube-studio platform itself (PLATFORM-FACTS item 16, 2026 release), in infra.

- ``kubeflow-dashboard-config``: the site's config.py / entrypoint.sh / project.py,
  only when site.yaml names them (``cube.config_py`` ...); otherwise nothing is
  mounted and the image's built-in files are used.
- ``deploy-config``: STAGE, HOST, REDIS_HOST, REDIS_PORT, MYSQL_SERVICE (without
  credentials, for people reading it), ENVIRONMENT, GPU_TYPE.
- ``cube-credentials`` (Secret): REDIS_PASSWORD and the full MYSQL_SERVICE URL.
  The platform reads the environment variables MYSQL_SERVICE (its SQLAlchemy
  URL) and REDIS_PASSWORD; in the pods both come from this Secret, the other
  variables from deploy-config.
- Deployments kubeflow-dashboard (web backend, port 80), kubeflow-dashboard-frontend
  (port 80), -schedule (Celery beat), -worker (Celery worker), kubeflow-watch;
  Services for the two web ones; ServiceAccount kubeflow-dashboard with its
  ClusterRole.
"""

from __future__ import annotations

from urllib.parse import quote

from cubeinstall.core.errors import ConfigError
from cubeinstall.render.engine import render_stage
from cubeinstall.site import platform
from cubeinstall.site.model import Site
from cubeinstall.stages.workloads import (
    opaque_secret,
    pod_values,
    roll_on_config_change,
)
from cubeinstall.upstream import manifests

STAGE = "cube"
UPSTREAM = ("cube-studio",)  # the platform's own install tree, pinned
NAMESPACE = "infra"
CREDENTIALS_SECRET = "cube-credentials"
PLATFORM_DATABASE = "kubeflow"

# site field -> (key in kubeflow-dashboard-config, where the platform reads it)
CONFIG_FILES = (
    ("config_py", "config.py", "/home/myapp/myapp/config.py"),
    ("entrypoint_sh", "entrypoint.sh", "/entrypoint.sh"),
    ("project_py", "project.py", "/home/myapp/myapp/project.py"),
)

CELERY_APP = "--app=myapp.tasks.celery_app:celery_app"
# The Deployments running the backend image: name, command, and whether they
# use the platform volume (infra-kubeflow at /data/k8s/kubeflow/) and serve HTTP.
BACKEND_WORKLOADS = (
    {"name": "kubeflow-dashboard", "command": ["bash", "/entrypoint.sh"],
     "workdir": None, "data": True, "web": True},
    {"name": "kubeflow-dashboard-schedule",
     "command": ["celery", CELERY_APP, "beat", "--loglevel=info"],
     "workdir": None, "data": False, "web": False},
    {"name": "kubeflow-dashboard-worker",
     "command": ["celery", CELERY_APP, "worker", "--loglevel=info", "--pool=prefork", "-Ofair",
                 "-c", "20", "-n", "worker@%h"],
     "workdir": None, "data": True, "web": False},
    {"name": "kubeflow-watch", "command": ["bash", "myapp/tools/start.sh"],
     "workdir": "/home/myapp", "data": False, "web": False},
)


def render(site: Site) -> list[dict]:
    manifests.require(site, UPSTREAM)
    files = config_files(site)
    repository, tag = site.cube.image_repository.rstrip("/"), site.cube.image_tag
    objects = render_stage(
        STAGE,
        namespace=NAMESPACE,
        deploy_config=deploy_config(site),
        config_files=files,
        config_mounts=[(key, path) for _, key, path in CONFIG_FILES if key in files],
        credentials_secret=CREDENTIALS_SECRET,
        kubeconfig_secret=platform.KUBECONFIG_SECRET,
        backend_workloads=BACKEND_WORKLOADS,
        backend_image=f"{repository}/kubeflow-dashboard:{tag}",
        frontend_image=f"{repository}/kubeflow-dashboard-frontend:{tag}",
        **pod_values(site, STAGE),
    )
    objects.append(opaque_secret(CREDENTIALS_SECRET, NAMESPACE, {
        "MYSQL_SERVICE": mysql_url(site, with_credentials=True),
        "REDIS_PASSWORD": site.redis.password.reveal(),
    }))
    return roll_on_config_change(objects)


def config_files(site: Site) -> dict[str, str]:
    """The platform files the site gives, read now: key -> text."""
    files = {}
    for field, key, _ in CONFIG_FILES:
        path = getattr(site.cube, field)
        if path is None:
            continue
        try:
            files[key] = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise ConfigError(f"cube.{field}: cannot read {path}: {reason}",
                              hint=f"point cube.{field} at a readable UTF-8 file, or remove it "
                                   f"to use the {key} built into the image") from None
    return files


def deploy_config(site: Site) -> dict[str, str]:
    redis_host, redis_port = redis_address(site)
    return {
        "STAGE": "prod",
        "HOST": site.domain,
        "REDIS_HOST": redis_host,
        "REDIS_PORT": str(redis_port),
        "MYSQL_SERVICE": mysql_url(site, with_credentials=False),
        "ENVIRONMENT": site.cube.environment,
        "GPU_TYPE": site.cube.gpu_type,
    }


def redis_address(site: Site) -> tuple[str, int]:
    if site.redis.mode == "in-cluster":
        return "redis-master.infra", 6379
    return site.redis.host or "", site.redis.port


def mysql_url(site: Site, *, with_credentials: bool) -> str:
    """The platform's SQLAlchemy URL: mysql+pymysql://USER:PASSWORD@HOST:PORT/kubeflow?charset=utf8."""
    mysql = site.mysql
    host, port = ("mysql-service.infra", 3306) if mysql.mode == "in-cluster" else (mysql.host, mysql.port)
    credentials = ""
    if with_credentials:
        user, password = ((mysql.app_user.name, mysql.app_user.password) if mysql.app_user
                          else (mysql.user, mysql.password))
        # Quoted: a password with @ / : or % must not break the URL (SQLAlchemy unquotes).
        credentials = f"{quote(user, safe='')}:{quote(password.reveal(), safe='')}@"
    return f"mysql+pymysql://{credentials}{host}:{port}/{PLATFORM_DATABASE}?charset=utf8"
