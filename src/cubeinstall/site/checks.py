"""Rules across sections of a site that parsed field by field.

Each rule yields (path, message); the loader turns paths into file:line:column.
They run together so that a user sees every problem in one run.
"""

from __future__ import annotations

import re
from typing import Callable, Iterator

from cubeinstall.site import stages as registry
from cubeinstall.site.model import SERVER_FORM, Site

Problem = tuple[tuple, str]
Rule = Callable[[Site], Iterator[Problem]]

RULES: list[Rule] = []


def reads(*sections: str) -> Callable[[Rule], Rule]:
    """Register a rule with the top-level sections it reads: it runs only when they all
    validated (their own problems are reported already); whatever else goes wrong in it,
    an AttributeError included, is a bug of the rule and is raised."""
    def register(rule: Rule) -> Rule:
        rule.sections = sections  # type: ignore[attr-defined]
        RULES.append(rule)
        return rule
    return register


def missing_sections(site: Site, rule: Rule) -> list[str]:
    """The sections ``rule`` reads that ``site`` lacks (the loader leaves out a section that
    did not validate, rather than judging its default)."""
    return [name for name in rule.sections if name not in site.__dict__]  # type: ignore[attr-defined]


def check_site(site: Site) -> list[Problem]:
    """Every rule's problems. ``site`` may be partial (built by the loader from the sections
    that validated while others did not): a rule that reads a missing section is not run."""
    return [problem for rule in RULES if not missing_sections(site, rule)
            for problem in rule(site)]


@reads("nodes")
def _unique_nodes(site: Site) -> Iterator[Problem]:
    seen_names: dict[str, int] = {}
    seen_addresses: dict[str, int] = {}
    for index, node in enumerate(site.nodes):
        if node.name in seen_names:
            yield (("nodes", index, "name"),
                   f"node name {node.name!r} is already used by nodes[{seen_names[node.name]}]; "
                   "node names must be unique")
        seen_names.setdefault(node.name, index)
        if node.address in seen_addresses:
            yield (("nodes", index, "address"),
                   f"address {node.address!r} is already used by nodes[{seen_addresses[node.address]}]")
        seen_addresses.setdefault(node.address, index)


@reads("clusters")
def _unique_clusters(site: Site) -> Iterator[Problem]:
    names = [cluster.name for cluster in site.clusters]
    for index, name in enumerate(names):
        if name in names[:index]:
            yield (("clusters", index, "name"), f"cluster name {name!r} is used twice")


@reads("nodes", "clusters")
def _node_clusters_known(site: Site) -> Iterator[Problem]:
    known = site.cluster_names
    for index, node in enumerate(site.nodes):
        if node.cluster is not None and node.cluster not in known:
            yield (("nodes", index, "cluster"),
                   f"node {node.name}: cluster {node.cluster!r} is not one of the site's "
                   f"clusters ({', '.join(known)}); name one of them, or remove the key "
                   f"(default: the first, {known[0]})")


@reads("cube", "clusters")
def _cube_environment(site: Site) -> Iterator[Problem]:
    environment = site.cube.environment
    home = site.platform_cluster.name
    if environment is not None and environment.lower() != home:
        yield (("cube", "environment"),
               f"ENVIRONMENT must name the cluster the platform runs in (config.py reads "
               f"CLUSTERS[ENVIRONMENT.lower()], whose keys are the cluster names): "
               f"{environment!r} is not clusters[0].name {home!r}; remove cube.environment, "
               f"or name the first cluster {environment.lower()!r}")


@reads("components")
def _components_known(site: Site) -> Iterator[Problem]:
    import difflib

    for name in site.components:
        if name not in registry.STAGE_NAMES:
            close = difflib.get_close_matches(name, registry.STAGE_NAMES, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            yield (("components", name),
                   f"unknown component {name!r}{hint} (components are stage names: "
                   "run `cubeinstall stages`)")


@reads("found")
def _found_not_written(site: Site) -> Iterator[Problem]:
    if "found" in site.model_fields_set:
        yield (("found",), "found is what a run finds in the cluster, not a setting: remove it")


@reads("components")
def _component_options_supported(site: Site) -> Iterator[Problem]:
    """A per-component setting the stage does not honour is refused, never ignored."""
    for name, component in site.components.items():
        if name not in registry.STAGE_NAMES:
            continue  # _components_known says so
        options = registry.get(name).options
        if component.namespace and registry.NAMESPACE_OPTION not in options:
            yield (("components", name, "namespace"),
                   f"stage {name} always installs into its own namespace: remove "
                   f"components.{name}.namespace")
        if component.mode == "existing" and registry.EXISTING_OPTION not in options:
            yield (("components", name, "mode"),
                   f"stage {name} cannot use an existing installation (only "
                   f"{', '.join(s.name for s in registry.STAGES if registry.EXISTING_OPTION in s.options)} can): "
                   f"remove components.{name}.mode, or disable the stage with "
                   f"components: {{{name}: {{enabled: false}}}}")
        if component.server and (registry.SERVER_OPTION not in options
                                 or component.mode != "existing"):
            yield (("components", name, "server"),
                   f"components.{name}.server names the server of an existing installation: "
                   f"only for a stage that routes to one (kubeflow) with mode: existing; "
                   f"remove it or set components.{name}.mode: existing")
        elif component.server and not _server_form(component.server):
            yield (("components", name, "server"),
                   f"{component.server!r} is not namespace/service:port "
                   "(e.g. argo/argo-server:2746)")
        if component.mode == "replace" and registry.REPLACE_OPTION not in options:
            yield (("components", name, "mode"),
                   f"stage {name} has no other controller to replace (only "
                   f"{', '.join(s.name for s in registry.STAGES if registry.REPLACE_OPTION in s.options)} have): "
                   f"remove components.{name}.mode")


def _server_form(text: str) -> bool:
    return re.fullmatch(SERVER_FORM, text) is not None


@reads("nodes", "clusters", "components", "mysql", "redis", "registry")
def _placement_covered(site: Site) -> Iterator[Problem]:
    """Each cluster a stage runs on needs a node with its placement label (a platform stage:
    the first cluster; a stage of every cluster: each cluster). A cluster none of whose
    nodes the site lists labels its nodes itself: nothing to check there."""
    for index, cluster in enumerate(site.clusters):
        part = site.for_cluster(cluster.name)
        if index and not part.nodes:
            continue
        labelled: set[str] = set()
        for node in part.nodes:
            labelled.update(node.roles)
            labelled.update(key for key, value in node.labels.items() if value == "true")
        for stage in registry.STAGES:
            runs_here = (stage.scope is registry.Scope.EVERY_CLUSTER
                         or (stage.scope is registry.Scope.PLATFORM
                             and cluster.name == site.platform_cluster.name))
            label = stage.placement_label(site)
            if not (runs_here and label and stage.enabled(part)) or label in labelled:
                continue
            path = ("components", stage.name, "placement") if stage.name in site.components else ("nodes",)
            where = "" if len(site.clusters) == 1 else f" of cluster {cluster.name}"
            yield (path,
                   f"stage {stage.name} places its pods on nodes labelled {label}=true, "
                   f"but no node{where} has role {label!r}: add it to the roles of a node{where}, "
                   f"or disable the stage with components: {{{stage.name}: {{enabled: false}}}}")


@reads("components", "nodes")
def _gpu_runtime(site: Site) -> Iterator[Problem]:
    setting = site.component("gpu-runtime").enabled
    if setting and not any(node.is_gpu for node in site.nodes):
        yield (("components", "gpu-runtime", "enabled"),
               "gpu-runtime is enabled but no node has role gpu")


@reads("components", "registry")
def _registry_trust(site: Site) -> Iterator[Problem]:
    stage = registry.get("registry-trust")
    if site.component(stage.name).enabled and not stage.enabled(site):
        yield (("components", stage.name, "enabled"),
               "registry-trust is enabled but nodes have nothing to trust: it needs a registry "
               "they pull from (registry.mirror) that is insecure or has a ca_file")


@reads("mysql", "redis")
def _external_services(site: Site) -> Iterator[Problem]:
    if site.mysql.mode == "external" and not site.mysql.host:
        yield (("mysql", "mode"), "mysql mode external needs mysql.host")
    if site.redis.mode == "external" and not site.redis.host:
        yield (("redis", "mode"), "redis mode external needs redis.host")
    if site.mysql.app_user and site.mysql.app_user.name == site.mysql.user:
        yield (("mysql", "app_user", "name"),
               "the application user must differ from the administrative user")


@reads("gateway", "clusters", "domain")
def _gateways(site: Site) -> Iterator[Problem]:
    """Each cluster's gateway: the first's is the site's ``domain`` and ``gateway``; every
    other cluster gives its own (the platform links to a notebook through the gateway of
    the cluster it runs in). No address or domain serves two clusters."""
    first = site.platform_cluster
    for field in ("domain", "gateway"):
        if getattr(first, field) is not None:
            yield (("clusters", 0, field),
                   f"clusters[0] runs the platform: its {field} is the site's top-level "
                   f"`{field}:`; move clusters[0].{field} there")
    domains: dict[str, str] = {site.domain: "domain"}
    addresses: dict[str, str] = {}
    for index, cluster in enumerate(site.clusters):
        where = site.gateway_path(cluster)
        if index:
            yield from _own_gateway(index, cluster, domains)
        gateway = site.gateway_of(cluster)
        if gateway is None:
            continue
        field = site.gateway_field(cluster)
        if gateway.expose == "externalIPs" and not gateway.addresses:
            yield (where + ("addresses",),
                   f"{field}.expose is externalIPs but no addresses are given: list the node IPs "
                   "users reach, or use expose: NodePort")
        if gateway.expose == "NodePort" and gateway.node_port_http == gateway.node_port_http_alt:
            yield (where + ("node_port_http_alt",),
                   f"{field}.node_port_http_alt {gateway.node_port_http_alt} is also "
                   f"{field}.node_port_http: the two Gateways need two ports")
        if gateway.expose != "externalIPs":
            continue
        for position, address in enumerate(gateway.addresses):
            if address in addresses:
                yield (where + ("addresses", position),
                       f"{field}.addresses: {address} is also in {addresses[address]}: "
                       "an address reaches the gateway of one cluster only")
            addresses.setdefault(address, f"{field}.addresses")


def _own_gateway(index: int, cluster, domains: dict[str, str]) -> Iterator[Problem]:
    """A cluster after the first names how users reach its gateway."""
    if cluster.domain is None:
        yield (("clusters", index),
               f"cluster {cluster.name} needs `domain`: the DNS name users reach "
               "its gateway at (config.py CLUSTERS HOST and SERVICE_DOMAIN; notebooks there "
               "are opened through it)")
    elif cluster.domain in domains:
        yield (("clusters", index, "domain"),
               f"clusters[{index}].domain {cluster.domain!r} is also {domains[cluster.domain]}: "
               "each cluster's gateway needs its own name")
    else:
        domains[cluster.domain] = f"clusters[{index}].domain"
    if cluster.gateway is None:
        yield (("clusters", index),
               f"cluster {cluster.name} needs `gateway`: how users reach its "
               "ingress gateway (expose: externalIPs with addresses, or NodePort)")
