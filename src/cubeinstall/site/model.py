"""The typed site: everything the stages need, with defaults from PLATFORM-FACTS.

All models are frozen and reject unknown keys. Paths are resolved against the
directory of the site file (validation context ``base_dir``). Cross-field rules
that span sections live in ``site/checks.py`` so that every problem is
reported at once.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
)

from cubeinstall.site.secrets import Secret

# --- shared field types ------------------------------------------------------

_DNS_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
_DNS_NAME = re.compile(rf"^{_DNS_LABEL}(\.{_DNS_LABEL})*$")
_HOST_NAME = re.compile(r"^[A-Za-z0-9_]([-A-Za-z0-9_]{0,62})?(\.[A-Za-z0-9_]([-A-Za-z0-9_]{0,62})?)*\.?$")

DNS_LABEL_PATTERN = rf"^{_DNS_LABEL}$"
Name = Annotated[str, Field(pattern=DNS_LABEL_PATTERN, max_length=63)]
Port = Annotated[int, Field(ge=1, le=65535)]


def _expand_path(value: str | None, info: ValidationInfo) -> Path | None:
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise ValueError(f"must be one path, a string (got a {_yaml_type(value)})")
    path = Path(os.path.expanduser(str(value)))
    if not path.is_absolute():
        path = Path((info.context or {}).get("base_dir", ".")) / path
    return path


def _absolute_posix(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError(f"must be an absolute path on the nodes (starts with /), got {value!r}")
    if any(part in ("..",) for part in value.split("/")):
        raise ValueError("must not contain '..'")
    return value.rstrip("/") or "/"


def _yaml_type(value: object) -> str:
    return {list: "list", tuple: "list", dict: "mapping", bool: "boolean", int: "number",
            float: "number"}.get(type(value), type(value).__name__)


def _dns_name(value: str | None) -> str | None:
    if value is not None and (not _DNS_NAME.match(value) or len(value) > 253):
        raise ValueError(
            f"not a valid DNS name: {value!r} (lower-case letters, digits, '-' and '.')"
        )
    return value


def _host(value: str) -> str:
    """An IP address or a host name; all digits and dots must be a valid IPv4 address."""
    if ":" in value or re.fullmatch(r"[0-9.]+", value):
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise ValueError(f"not a valid IP address: {value!r}") from None
    elif not _HOST_NAME.match(value) or len(value) > 253:
        raise ValueError(f"not a host name or IP address: {value!r}")
    return value


def _host_port(value: str) -> str:
    """host[:port], [IPv6][:port]; the port in 1-65535."""
    host, port = value, None
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise ValueError(f"not a host[:port]: {value!r}")
        port = rest[1:] if rest else None
    elif value.count(":") == 1:
        host, port = value.split(":")
    if port is not None:
        if not port.isdigit():
            raise ValueError(f"not a host[:port]: {value!r} (the port is a number)")
        if not 1 <= int(port) <= 65535:
            raise ValueError(f"port out of range (1-65535) in {value!r}")
    _host(host)
    return value


Host = Annotated[str, AfterValidator(_host)]
HostPort = Annotated[str, AfterValidator(_host_port)]
LocalPath = Annotated[Path, Field(description="a local file path, relative to site.yaml")]
NodePath = Annotated[str, AfterValidator(_absolute_posix)]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# --- clusters ------------------------------------------------------------------


def _ip_address(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"not an IP address: {value!r}") from None
    return value


IPAddress = Annotated[str, AfterValidator(_ip_address)]


class Gateway(Model):
    """How users reach a cluster's ingress gateway (Service ``cube-ingress``)."""

    expose: Literal["externalIPs", "NodePort"] = "externalIPs"
    addresses: tuple[IPAddress, ...] = ()
    node_port_http: Port = 30080
    node_port_http_alt: Port = 30808


class Cluster(Model):
    name: Name
    kubeconfig: LocalPath = Field(default=Path("~/.kube/config"))
    context: str | None = None
    # The platform's notebooks and services are reached through the gateway of the cluster
    # they run in: each cluster after the first says how (the first: the site's own
    # `domain` and `gateway`).
    domain: str | None = Field(
        default=None,
        description="DNS name users reach this cluster's gateway at (every cluster after "
                    "the first; the first uses the site's domain)")
    gateway: Gateway | None = Field(
        default=None,
        description="this cluster's gateway exposure (every cluster after the first; the "
                    "first uses the site's gateway)")

    _domain = field_validator("domain")(_dns_name)

    _resolve = field_validator("kubeconfig", mode="before")(_expand_path)


# --- registry ------------------------------------------------------------------


class Registry(Model):
    host: str = Field(description="registry host[:port], no scheme")
    project: str = Field(default="cube-studio", pattern=r"^[a-z0-9]+([._/-][a-z0-9]+)*$")
    username: str | None = None
    password: Secret | None = None
    insecure: bool = False
    ca_file: LocalPath | None = None
    naming: Literal["flatten", "keep-path"] = "flatten"
    mirror: bool = Field(
        default=True,
        description="images are pulled from this registry (rewritten at render time)",
    )

    _resolve = field_validator("ca_file", mode="before")(_expand_path)

    @field_validator("host")
    @classmethod
    def _host_without_scheme(cls, value: str) -> str:
        if "://" in value:
            raise ValueError(
                f"registry host must not have a scheme: write {value.split('://', 1)[1].rstrip('/')!r}"
            )
        return _host_port(value)

    @property
    def prefix(self) -> str:
        return f"{self.host}/{self.project}"


# --- SSH and nodes ---------------------------------------------------------------

ROLE_KINDS = ("cpu", "gpu")
ROLE_WORKLOADS = ("train", "notebook", "service")
ROLE_PLACEMENTS = (
    "mysql",
    "redis",
    "monitoring",
    "logging",
    "kubeflow",
    "kubeflow-dashboard",
    "istio",
    "knative",
)
Role = Literal[ROLE_KINDS + ROLE_WORKLOADS + ROLE_PLACEMENTS]  # type: ignore[valid-type]


class SSH(Model):
    user: str = "root"
    port: Port = 22
    key_file: LocalPath | None = None
    password: Secret | None = None
    sudo_password: Secret | None = None
    config_file: LocalPath | None = Field(default=Path("~/.ssh/config"))
    known_hosts: LocalPath = Field(default=Path("~/.ssh/known_hosts"))
    # Hosts worked on at once. A host costs the installer ~9 ms of CPU and ~18 network
    # round trips (first run), so 64 keeps it busy up to ~30 ms round trip (bench/RESULTS.md).
    parallel: int = Field(default=64, ge=1, le=256)
    connect_timeout: float = Field(default=10, gt=0)
    command_timeout: float = Field(default=300, gt=0)

    _resolve = field_validator("key_file", "config_file", "known_hosts", mode="before")(
        _expand_path
    )


class Node(Model):
    name: Name
    address: Host = Field(description="IP or host name the installer connects to")
    ssh_alias: str | None = Field(
        default=None, description="a Host entry of ~/.ssh/config to use instead of address"
    )
    port: Port | None = None
    user: str | None = None
    key_file: LocalPath | None = None
    password: Secret | None = None
    sudo: bool | None = Field(default=None, description="default: true when the user is not root")
    sudo_password: Secret | None = None
    roles: tuple[Role, ...] = Field(description="required: its kind (cpu or gpu) and more")
    org: Name = "public"
    labels: dict[str, str] = Field(default_factory=dict)
    cluster: Name | None = Field(
        default=None, description="the cluster (clusters[].name) it is a node of; default: the first"
    )

    _resolve = field_validator("key_file", mode="before")(_expand_path)

    @field_validator("roles")
    @classmethod
    def _one_kind(cls, roles: tuple[str, ...]) -> tuple[str, ...]:
        kinds = [role for role in roles if role in ROLE_KINDS]
        if len(kinds) != 1:
            raise ValueError(
                f"a node has exactly one kind, cpu or gpu (got {', '.join(kinds) or 'none'})"
            )
        if len(set(roles)) != len(roles):
            raise ValueError("a role is listed twice")
        return roles

    @property
    def is_gpu(self) -> bool:
        return "gpu" in self.roles


# --- storage ---------------------------------------------------------------------


class _StorageBase(Model):
    mount_point: NodePath = "/data/k8s"
    mount_at: NodePath | None = Field(
        default=None,
        description="mount the file system here and make mount_point a symlink to it",
    )
    options: tuple[str, ...] = ()


class CephFS(_StorageBase):
    type: Literal["cephfs"]
    monitors: tuple[HostPort, ...] = Field(min_length=1)
    path: NodePath = "/"
    user: str = "admin"
    secret: Secret


class NFS(_StorageBase):
    type: Literal["nfs"]
    server: Host
    export: NodePath


class LocalStorage(_StorageBase):
    type: Literal["local"]


Storage = Annotated[Union[CephFS, NFS, LocalStorage], Field(discriminator="type")]


# --- data services ---------------------------------------------------------------

_IDENTIFIER = r"^[A-Za-z0-9_]{1,64}$"


class Database(Model):
    name: str = Field(pattern=_IDENTIFIER)
    charset: str = Field(default="utf8", pattern=r"^[a-z0-9_]+$")
    collation: str = Field(default="utf8_general_ci", pattern=r"^[a-z0-9_]+$")


DEFAULT_DATABASES = tuple(
    Database(name=name) for name in ("kubeflow", "mlpipeline", "katib", "metadb", "cachedb")
)


class AppUser(Model):
    name: str = Field(pattern=r"^[A-Za-z0-9_]{1,32}$")
    password: Secret


class MySQLTLS(Model):
    ca_file: LocalPath | None = None
    verify: bool = True

    _resolve = field_validator("ca_file", mode="before")(_expand_path)


class MySQL(Model):
    mode: Literal["in-cluster", "external"] = "in-cluster"
    host: Host | None = Field(default=None, description="external MySQL host")
    port: Port = 3306
    user: str = "root"
    password: Secret = Field(description="password of `user` (in-cluster: the root password)")
    databases: tuple[Database, ...] = DEFAULT_DATABASES
    app_user: AppUser | None = None
    tls: MySQLTLS | None = None
    storage_size: str = "10Gi"


class Redis(Model):
    mode: Literal["in-cluster", "external"] = "in-cluster"
    host: Host | None = None
    port: Port = 6379
    password: Secret


# --- components, platform, gateway, timeouts ----------------------------------------


SERVER_FORM = r"([a-z0-9-]+)/([a-z0-9-]+):(\d+)"  # components.<stage>.server


class Component(Model):
    enabled: bool | None = Field(default=None, description="default depends on the stage")
    version: str | dict[str, str] | None = Field(
        default=None,
        description="upstream version; a stage with several upstream components (kubeflow) "
                    "takes a mapping: {argo-workflows: v4.1.3}",
    )
    placement: str | None = Field(
        default=None, description="node label (=true) the component's pods select"
    )
    sha256: dict[str, str] = Field(
        default_factory=dict, description="file -> sha256 when overriding an upstream version"
    )
    mode: Literal["install", "existing", "replace"] = Field(
        default="install",
        description="install; existing: use what the cluster already runs; replace: `adopt` "
                    "removes the controller an earlier install runs elsewhere",
    )
    namespace: Name | None = Field(
        default=None, description="namespace the component installs into (default: its own)"
    )
    server: str | None = Field(
        default=None,
        description="kubeflow with mode existing: the running argo-server's Service the "
                    "gateway routes /argo/ to, namespace/service:port; found in the cluster "
                    "when not set",
    )


class Cube(Model):
    image_tag: str = "2026.03.01"
    image_repository: str = "ccr.ccs.tencentyun.com/cube-studio"
    environment: str | None = Field(
        default=None,
        description="the platform's ENVIRONMENT: the name of the cluster it runs in "
                    "(config.py reads CLUSTERS[ENVIRONMENT]); default and only value: "
                    "clusters[0].name",
    )
    config_py: LocalPath | None = None
    entrypoint_sh: LocalPath | None = None
    project_py: LocalPath | None = None

    _resolve = field_validator("config_py", "entrypoint_sh", "project_py", mode="before")(
        _expand_path
    )


class Timeouts(Model):
    object_seconds: float = Field(default=300, gt=0, description="readiness of one object")
    stage_seconds: float = Field(default=1800, gt=0)


class Gates(Model):
    webhooks: Literal["probe", "skip"] = Field(
        default="probe",
        description="wait until admission webhooks answer (skip on simulated clusters)",
    )
    services: Literal["probe", "skip"] = Field(
        default="probe",
        description="after the redis stage, log in to Redis through a port-forward "
                    "(skip on simulated clusters, whose pods serve no traffic)",
    )


class Upstream(Model):
    base_url: str | None = Field(
        default=None,
        description="mirror of the pinned upstream files, laid out <base_url>/<component>/"
                    "<version>/<path> (or a template with {component} {repo} {version} {path}); "
                    "default: the projects' raw GitHub URLs",
    )

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^(https?|file)://", value):
            raise ValueError(f"must start with http://, https:// or file://, got {value!r}")
        return value.rstrip("/") if value else value


class NodePrep(Model):
    swap: Literal["off", "keep"] = Field(
        default="off", description="kubelet wants swap off: now and commented out in /etc/fstab")
    firewall: Literal["check", "disable", "ignore"] = Field(
        default="check",
        description="check: warn when firewalld/ufw is active; disable: stop and disable it")


class Dashboard(Model):
    skip_login: Literal["none", "user", "all"] = Field(
        default="user",
        description="which dashboards offer 'skip' (act as the dashboard's own service account "
                    "without a token): user = only the restricted one; all also makes the "
                    "cluster-admin one open to anyone who reaches the gateway",
    )


class Monitoring(Model):
    retention: str = Field(default="15d", pattern=r"^[0-9]+(ms|s|m|h|d|w|y)$",
                           description="how long Prometheus keeps samples")
    grafana_admin_password: Secret | None = Field(
        default=None,
        description="without it Grafana has no login at all (anonymous viewers only), "
                    "never the shipped admin/admin",
    )


class Logging(Model):
    elasticsearch_heap: str = Field(default="1g", pattern=r"^[0-9]+[mg]$",
                                    description="JVM heap of Elasticsearch (-Xms/-Xmx)")


class Namespaces(Model):
    extra: tuple[Name, ...] = ()


class Adopt(Model):
    """`cubeinstall adopt`: taking over a site an earlier install (start.sh) made."""

    keep: tuple[str, ...] = Field(
        default=(),
        description="leftovers of the earlier install adopt must not remove, as the plan "
                    "names them: 'Deployment kubeflow/my-tool', 'ClusterRole my-role'",
    )


class Volume(Model):
    """Override of one platform volume (PLATFORM-FACTS item 17), keyed by claim name."""

    size: str | None = Field(default=None, pattern=r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi)?$")
    path: NodePath | None = Field(default=None, description="host path on the shared storage")


class FoundVolume(Model):
    """A claim's live volume: its name and host path source, as the cluster has them."""

    name: str
    host_path: dict[str, str]


class Found(Model):
    """What a run found in the clusters before rendering (never written in site.yaml):
    in each cluster (by name), the volume each claim is bound to ("namespace/claim"), so
    that a volume an earlier install named otherwise, or whose immutable source differs
    only in form, stays the claim's (stages/bound_volumes.py)."""

    volumes: dict[str, dict[str, FoundVolume]] = Field(default_factory=dict)


def dotted(loc: tuple) -> str:
    """A site.yaml field as errors name it: ``clusters[1].gateway.addresses``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


# --- the site ----------------------------------------------------------------------


class Site(Model):
    site: Name = Field(description="short name of this installation")
    domain: str = Field(description="DNS name users open the platform at")
    clusters: tuple[Cluster, ...] = Field(
        default=(Cluster(name="main"),), min_length=1, description="first = platform cluster"
    )
    registry: Registry | None = None
    runtime: Literal["docker", "containerd"] = "docker"
    ssh: SSH = SSH()
    nodes: tuple[Node, ...] = Field(min_length=1)
    storage: Storage
    mysql: MySQL
    redis: Redis
    components: dict[str, Component] = Field(default_factory=dict)
    found: Found = Field(default_factory=Found, exclude=True,
                         description="filled by the run from the cluster; not a setting")
    cube: Cube = Cube()
    gateway: Gateway = Gateway()
    namespaces: Namespaces = Namespaces()
    volumes: dict[str, Volume] = Field(default_factory=dict)
    timeouts: Timeouts = Timeouts()
    gates: Gates = Gates()
    upstream: Upstream = Upstream()
    node_prep: NodePrep = NodePrep()
    dashboard: Dashboard = Dashboard()
    monitoring: Monitoring = Monitoring()
    logging: Logging = Logging()
    adopt: Adopt = Adopt()
    # Set by for_cluster only: which cluster this view is for (not a key of site.yaml).
    _viewed_cluster: str | None = PrivateAttr(default=None)

    _domain = field_validator("domain")(_dns_name)

    @property
    def platform_cluster(self) -> Cluster:
        return self.clusters[0]

    @property
    def cluster_names(self) -> tuple[str, ...]:
        return tuple(cluster.name for cluster in self.clusters)

    def cluster_of(self, node: Node) -> str:
        return node.cluster or self.platform_cluster.name

    def for_cluster(self, name: str) -> "Site":
        """The site as one cluster's stages see it: that cluster's nodes only (node labels,
        GPU objects, placement render for their own cluster), every cluster still listed
        (the platform's CLUSTERS names them all), ``cluster`` = that one. The platform
        cluster's view of a site whose nodes are all its own is the site as it is."""
        nodes = tuple(node for node in self.nodes if self.cluster_of(node) == name)
        if nodes == self.nodes and name == self.cluster.name:
            return self
        view = self.model_copy(update={"nodes": nodes})
        view._viewed_cluster = name
        return view

    @property
    def cluster(self) -> Cluster:
        """The cluster this view of the site is for (``for_cluster``; else the platform's)."""
        name = self._viewed_cluster
        return next((c for c in self.clusters if c.name == name), self.platform_cluster)

    @property
    def found_volumes(self) -> dict[str, FoundVolume]:
        """The volumes the claims of this view's cluster are bound to (``found``)."""
        return self.found.volumes.get(self.cluster.name, {})

    def domain_of(self, cluster: Cluster) -> str | None:
        """The DNS name users reach a cluster's gateway at (the first: the site's domain)."""
        return self.domain if cluster.name == self.platform_cluster.name else cluster.domain

    def gateway_of(self, cluster: Cluster) -> Gateway | None:
        """How a cluster's gateway is exposed (the first: the site's ``gateway``)."""
        return self.gateway if cluster.name == self.platform_cluster.name else cluster.gateway

    def gateway_path(self, cluster: Cluster) -> tuple:
        """Where site.yaml sets a cluster's gateway: ``gateway`` for the first,
        ``clusters.<index>.gateway`` for the others (errors name it)."""
        if cluster.name == self.platform_cluster.name:
            return ("gateway",)
        return ("clusters", self.cluster_names.index(cluster.name), "gateway")

    def gateway_field(self, cluster: Cluster) -> str:
        """The same as errors write it: ``gateway``, ``clusters[1].gateway``."""
        return dotted(self.gateway_path(cluster))

    def component(self, name: str) -> Component:
        return self.components.get(name) or Component()
