"""The platform's own files (ConfigMap kubeflow-dashboard-config): config.py, entrypoint.sh, project.py.

Each is the pinned upstream file (install/kubernetes/cube/overlays/config/), unless the
site gives its own (``cube.config_py`` ...), which is then used as it is. Upstream's
config.py gets the site's values only in the top-level assignments the site decides,
located with ``ast`` (render/pyassign.py); every other byte stays upstream's:

- ``SERVICE_EXTERNAL_IP``: the gateway's addresses (start.sh:146 writes the node IP).
- ``CLUSTERS``: one entry per site cluster, key = its name (config.py lower-cases
  ENVIRONMENT and reads ``CLUSTERS[ENVIRONMENT]`` at import, so ENVIRONMENT is the
  platform cluster's name), with upstream's keys NAME, KUBECONFIG, SERVICE_DOMAIN, HOST:
  HOST and SERVICE_DOMAIN from that cluster's own gateway (``clusters[].domain`` and
  ``clusters[].gateway``; the first: the site's ``domain`` and ``gateway``).
- With a mirroring site registry, the images the platform starts itself (offline.md's
  list: REPOSITORY_ORG, NOTEBOOK_IMAGES, ...), renamed as every other image
  (naming.target_name).

Database and Redis settings are not written here: upstream's config.py reads them from
the environment (MYSQL_SERVICE, REDIS_HOST, REDIS_PORT, REDIS_PASSWORD, ENVIRONMENT),
which the Deployments take from deploy-config and the Secret cube-credentials.
"""

from __future__ import annotations

from typing import Any, Callable

from cubeinstall.core.errors import ConfigError, CubeError
from cubeinstall.render import naming
from cubeinstall.render.pyassign import assigned_value, replace_assignments
from cubeinstall.site import platform
from cubeinstall.site.model import Cluster, Registry, Site
from cubeinstall.upstream import manifests

COMPONENT = "cube-studio"
CONFIG_DIR = "install/kubernetes/cube/overlays/config/"
CONFIG_MAP = "kubeflow-dashboard-config"
# site field -> key (file name) in the ConfigMap
FILES = (("config_py", "config.py"), ("entrypoint_sh", "entrypoint.sh"), ("project_py", "project.py"))
PATHS = tuple(CONFIG_DIR + key for _, key in FILES)


def files(site: Site) -> dict[str, str]:
    """Key -> text of the three platform files, the site's own where it gives one."""
    result = {}
    for field, key in FILES:
        own = getattr(site.cube, field)
        if own is not None:
            result[key] = _read_site_file(own, field, key)
        elif key == "config.py":
            result[key] = site_config_py(site)
        else:
            result[key] = manifests.text(site, COMPONENT, CONFIG_DIR + key)
    return result


def site_config_py(site: Site) -> str:
    """Upstream's config.py with the site's values in the assignments the site decides."""
    source = manifests.text(site, COMPONENT, CONFIG_DIR + "config.py")
    return configured(site, source, upstream_label(site))


def configured(site: Site, source: str, label: str) -> str:
    """``source`` (a config.py named ``label`` in errors) with the site's assignments."""
    return replace_assignments(source, site_assignments(site, source, label), label)


def upstream_label(site: Site) -> str:
    """e.g. ``cube-studio v2026.03.01 install/kubernetes/cube/overlays/config/config.py``."""
    return manifests.files(site, COMPONENT, [CONFIG_DIR + "config.py"])[0].label


def site_assignments(site: Site, source: str, label: str) -> dict[str, Any]:
    values: dict[str, Any] = {
        "SERVICE_EXTERNAL_IP": list(site.gateway.addresses),
        "CLUSTERS": clusters(site),
    }
    registry = site.registry
    if registry is not None and registry.mirror:
        for name, rename in IMAGE_SETTINGS.items():
            values[name] = _renamed(name, assigned_value(source, name, label), rename,
                                    registry, label)
    return values


def environment(site: Site) -> str:
    """deploy-config's ENVIRONMENT: the CLUSTERS key of the cluster the platform runs in."""
    return site.platform_cluster.name


def service_domain(site: Site, cluster: Cluster) -> str:
    """Domain of the inference services of a cluster (``<service>.<SERVICE_DOMAIN>``,
    routed by that cluster's gateway)."""
    return f"service.{site.domain_of(cluster)}"


def host(site: Site, cluster: Cluster) -> str:
    """config.py's HOST of a cluster: ``<gateway address>|<domain>``, the platform's
    ``'ip|public'`` form: notebooks and services there get the address as external IP,
    links go to the domain of that cluster's gateway (the first: the site's domain, which
    users log in at). Without addresses (NodePort): the domain."""
    gateway = site.gateway_of(cluster)
    address = gateway.addresses[0] if gateway.addresses else None
    return "|".join(part for part in (address, site.domain_of(cluster)) if part)


def clusters(site: Site) -> dict[str, dict[str, str]]:
    """config.py's CLUSTERS: every site cluster under its name, the platform's first, each
    with the address of its own gateway (the platform starts a notebook's VirtualService
    on the gateway of the cluster the notebook runs in)."""
    return {cluster.name: {
        "NAME": cluster.name,
        "KUBECONFIG": f"{platform.KUBECONFIG_DIR}/{platform.kubeconfig_file(cluster.name)}",
        "SERVICE_DOMAIN": service_domain(site, cluster),
        "HOST": host(site, cluster),
    } for cluster in site.clusters}


# -- images the platform starts itself (offline.md: "point them at your registry") --------------

def _image(value: Any, registry: Registry) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected an image reference, got {value!r}")
    return naming.target_name(value, registry)


def _organisation(value: Any, registry: Registry) -> str:
    """An image name prefix (``<registry>/<org>/``): the private name of ``<prefix>x`` minus ``x``."""
    if not isinstance(value, str) or not value.endswith("/"):
        raise TypeError(f"expected a prefix ending in '/', got {value!r}")
    probe = naming.target_name(f"{value}x:t", registry)
    return probe[:-len("x:t")]


def _push_organisation(value: Any, registry: Registry) -> str:
    """Where images users build are pushed: the site's own project."""
    return f"{registry.prefix}/"


def _notebook_images(value: Any, registry: Registry) -> list:
    return [[_image(image, registry), *rest] for image, *rest in value]


def _inference_images(value: Any, registry: Registry) -> dict:
    return {kind: [_image(image, registry) for image in images] for kind, images in value.items()}


IMAGE_SETTINGS: dict[str, Callable[[Any, Registry], Any]] = {
    "REPOSITORY_ORG": _organisation,
    "PUSH_REPOSITORY_ORG": _push_organisation,
    "USER_IMAGE": _image,
    "NOTEBOOK_IMAGES": _notebook_images,
    "NNI_IMAGES": _image,
    "INFERNENCE_IMAGES": _inference_images,  # sic: upstream's spelling
    "DOCKER_IMAGES": _image,
    "NERDCTL_IMAGES": _image,
    "WAIT_POD_IMAGES": _image,
}


def _renamed(name: str, value: Any, rename, registry: Registry, label: str) -> Any:
    try:
        return rename(value, registry)
    except (TypeError, ValueError, AttributeError) as exc:
        raise CubeError(f"{label}: {name} does not have the shape cubeinstall expects: {exc}",
                        hint="give your own config.py (cube.config_py), or report it") from None


def _read_site_file(path, field: str, key: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"cube.{field}: cannot read {path}: {reason}",
                          hint=f"point cube.{field} at a readable UTF-8 file, or remove it "
                               f"to use upstream's {key}") from None
