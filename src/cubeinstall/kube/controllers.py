"""Controllers an earlier install runs elsewhere, found before anything is applied.

cube-studio's start.sh runs Argo's workflow-controller and Volcano in namespace
``kubeflow``; cubeinstall installs them in ``argo`` and ``volcano-system``. Two
controllers of one kind would both act on every Workflow / Volcano Job, so the site
chooses: ``components.<stage>.mode: existing`` (keep the running one, install none)
or ``mode: replace`` (adopt removes the old one's Deployments, RBAC and webhooks in
the same plan; its custom resources and CRDs stay). Istio cannot be upgraded across
more than two minor versions at once (istio.io's upgrade guides): a running istiod
that much older is refused with the steps to take.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cubeinstall.core.errors import ConfigError
from cubeinstall.kube.client import KubeClient
from cubeinstall.kube.objects import is_owned, key_of, target
from cubeinstall.kube.ownership import written_by_kubectl
from cubeinstall.site.model import Site

MAX_MINOR_STEP = 2  # istio supports upgrading across at most two minor versions


@dataclass(frozen=True)
class Controller:
    stage: str
    what: str
    images: tuple[str, ...]  # last segment of the image's repository (a mirror's flattened name ends so too)
    config_map: str | None = None  # the ConfigMap it reads through the API unless --configmap says


CONTROLLERS = (
    Controller("kubeflow", "Argo workflow-controller", ("workflow-controller",),
               config_map="workflow-controller-configmap"),
    Controller("volcano", "Volcano", ("vc-scheduler", "vc-controller-manager", "vc-webhook-manager")),
)
ISTIOD = Controller("istio", "istiod", ("pilot",))
ARGO_SERVER = Controller("kubeflow", "Argo server", ("argocli",))
# What `mode: existing` keeps running: its objects are never leftovers to remove.
KEPT_WHEN_EXISTING = {"istio": (ISTIOD, Controller("istio", "Istio gateway", ("proxyv2",))),
                      "volcano": (CONTROLLERS[1],), "kubeflow": (CONTROLLERS[0], ARGO_SERVER)}


def containers(deployment: dict, *, init: bool = False) -> list[dict]:
    """The pod template's containers (``init``: the init containers after them)."""
    pod = ((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}
    return (pod.get("containers") or []) + ((pod.get("initContainers") or []) if init else [])


def images(deployment: dict) -> list[str]:
    return [c.get("image") or "" for c in containers(deployment, init=True)]


def repository(image: str) -> str:
    name = image.split("@", 1)[0]
    last = name.rpartition("/")[2]
    return last.partition(":")[0]


def flags(deployment: dict) -> dict[str, str | bool]:
    """A Deployment's command-line flags (``--name value``, ``--name=value``, ``--flag``)."""
    found: dict[str, str | bool] = {}
    for container in containers(deployment):
        words = [*(container.get("command") or []), *(container.get("args") or [])]
        for index, word in enumerate(words):
            if not word.startswith("--"):
                continue
            name, equals, value = word[2:].partition("=")
            if equals:
                found[name] = value
            elif index + 1 < len(words) and not words[index + 1].startswith("--"):
                found[name] = words[index + 1]
            else:
                found[name] = True
    return found


def config_map_of(deployment: dict, controller: Controller) -> str | None:
    """The ConfigMap the controller reads by name (not mounted)."""
    named = flags(deployment).get("configmap")
    return named if isinstance(named, str) else controller.config_map


def runs(deployment: dict, controller: Controller) -> bool:
    return any(repository(image).endswith(suffix) for image in images(deployment)
               for suffix in controller.images)


def minor_version(image: str) -> tuple[int, int] | None:
    tag = image.split("@", 1)[0].rpartition("/")[2].partition(":")[2]
    match = re.match(r"v?(\d+)\.(\d+)", tag)
    return (int(match[1]), int(match[2])) if match else None


def problems(live: list[dict], site: Site, objects: dict[str, list[dict]]) -> list[str]:
    """Pure: what refuses the plan, given the cluster's Deployments and our objects."""
    rendered = {key_of(o) for objs in objects.values() for o in objs}
    platform_namespaces = {o["metadata"]["name"] for objs in objects.values() for o in objs
                           if o.get("kind") == "Namespace"}
    found = []
    for controller in CONTROLLERS:
        ours = [o for o in objects.get(controller.stage, []) if o.get("kind") == "Deployment"
                and runs(o, controller)]
        others = [d for d in live if runs(d, controller) and key_of(d) not in rendered
                  and not is_owned(d)]
        if not ours or not others:
            continue  # nothing installed by us (mode existing, disabled), or no second one
        where = ", ".join(target(d) for d in others)
        mode = site.component(controller.stage).mode
        if mode != "replace":
            found.append(f"{controller.what} already runs ({where}) and stage "
                         f"{controller.stage} would install another ({target(ours[0])}): "
                         f"choose in site.yaml components.{controller.stage}.mode: existing "
                         "(keep the running one) or replace (adopt removes it; its custom "
                         "resources and CRDs stay)")
            continue
        for deployment in others:
            namespace = deployment["metadata"].get("namespace")
            if not written_by_kubectl(deployment) or namespace not in platform_namespaces:
                found.append(f"components.{controller.stage}.mode is replace, but "
                             f"{target(deployment)} was not written by kubectl in a platform "
                             "namespace: adopt does not remove it; remove it yourself or use "
                             "mode: existing")
    found += _istio_jump(live, objects.get(ISTIOD.stage, []))
    return found


def _istio_jump(live: list[dict], ours: list[dict]) -> list[str]:
    wanted = [minor_version(i) for o in ours if o.get("kind") == "Deployment"
              and runs(o, ISTIOD) for i in images(o) if repository(i).endswith("pilot")]
    wanted = [v for v in wanted if v]
    if not wanted:
        return []  # mode existing (or disabled): the running Istio stays as it is
    target_version = wanted[0]
    found = []
    for deployment in live:
        if not runs(deployment, ISTIOD) or is_owned(deployment):
            continue
        running = [v for i in images(deployment) if repository(i).endswith("pilot")
                   for v in [minor_version(i)] if v]
        if not running or running[0][0] != target_version[0]:
            continue
        version = running[0]
        if target_version[1] - version[1] > MAX_MINOR_STEP:
            found.append(f"{target(deployment)} runs Istio {version[0]}.{version[1]}; stage "
                         f"istio would replace it with {target_version[0]}.{target_version[1]} "
                         f"in place, more than {MAX_MINOR_STEP} minor versions at once, which "
                         "Istio does not support: upgrade it first in steps of at most two "
                         f"minor versions ({upgrade_steps(version, target_version)}; "
                         "istioctl upgrade or a revision-based canary per step, see "
                         "istio.io/latest/docs/setup/upgrade), or keep it with "
                         "components.istio.mode: existing")
    return found


def upgrade_steps(running: tuple[int, int], wanted: tuple[int, int]) -> str:
    major, minor = running
    steps = [f"{major}.{minor}"]
    while minor < wanted[1]:
        minor = min(minor + MAX_MINOR_STEP, wanted[1])
        steps.append(f"{major}.{minor}")
    return " -> ".join(steps)


def kept_by_existing(site: Site, candidates: list[dict]) -> dict[str, str]:
    """Of ``candidates`` (leftovers), those a controller the site keeps (``mode: existing``)
    runs with: its Deployments, their ServiceAccounts, ConfigMaps and Secrets, the
    Services selecting their pods, the bindings of their accounts and the roles those
    name, the webhooks calling their Services. target -> why."""
    kept: dict[str, str] = {}
    for stage, kinds in KEPT_WHEN_EXISTING.items():
        if site.component(stage).mode != "existing":
            continue
        why = f"the running {kinds[0].what.split()[0]} stays (components.{stage}.mode: existing)"
        for deployment in candidates:
            running = [c for c in kinds if deployment.get("kind") == "Deployment"
                       and runs(deployment, c)]
            if running:
                kept.update(dict.fromkeys(_used_by(deployment, candidates), why))
                if config_map_of(deployment, running[0]):
                    kept[f"ConfigMap {deployment['metadata'].get('namespace')}/"
                         f"{config_map_of(deployment, running[0])}"] = why
    return kept


def _used_by(deployment: dict, candidates: list[dict]) -> set[str]:
    namespace = deployment["metadata"].get("namespace") or ""
    template = (deployment.get("spec") or {}).get("template") or {}
    pod, labels = template.get("spec") or {}, (template.get("metadata") or {}).get("labels") or {}
    account = pod.get("serviceAccountName") or pod.get("serviceAccount") or "default"
    used = {target(deployment), f"ServiceAccount {namespace}/{account}"}
    for volume in pod.get("volumes") or []:
        if (volume.get("configMap") or {}).get("name"):
            used.add(f"ConfigMap {namespace}/{volume['configMap']['name']}")
        if (volume.get("secret") or {}).get("secretName"):
            used.add(f"Secret {namespace}/{volume['secret']['secretName']}")
    services = set()
    for obj in candidates:
        kind, meta = obj.get("kind"), obj.get("metadata") or {}
        selector = (obj.get("spec") or {}).get("selector") or {}
        if kind == "Service" and meta.get("namespace") == namespace and selector and all(
                labels.get(k) == v for k, v in selector.items()):
            used.add(target(obj))
            services.add((namespace, meta["name"]))
        if kind in ("RoleBinding", "ClusterRoleBinding") and any(
                s.get("kind") == "ServiceAccount" and s.get("name") == account
                and (s.get("namespace") or meta.get("namespace")) == namespace
                for s in obj.get("subjects") or []):
            used.add(target(obj))
            role = obj.get("roleRef") or {}
            where = f"{meta['namespace']}/" if role.get("kind") == "Role" else ""
            used.add(f"{role.get('kind')} {where}{role.get('name')}")
    for obj in candidates:
        if obj.get("kind") in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
            called = {(((w.get("clientConfig") or {}).get("service") or {}).get("namespace"),
                       ((w.get("clientConfig") or {}).get("service") or {}).get("name"))
                      for w in obj.get("webhooks") or []}
            if called & services:
                used.add(target(obj))
    return used


def check(client: KubeClient, site: Site, objects: dict[str, list[dict]]) -> None:
    live = client.list(client.resolve("apps/v1", "Deployment"))
    found = problems(live, site, objects)
    if found:
        raise ConfigError("adopt: controllers of the earlier install need a decision; nothing "
                          "was changed", problems=found,
                          hint="set the mode each line names in site.yaml, then run adopt again")
