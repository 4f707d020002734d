"""Typed patches over parsed objects: what a site changes in upstream manifests.

Every function takes objects and returns new objects; its input is never modified
(CustomResourceDefinitions, which no patch edits, are passed through as they are).
No patch edits YAML text. The site-wide registry rewrite is not here: it belongs to
the renderer (``render.finalize`` with ``images.rewrite``) for every stage alike; these
patches pin what upstream leaves floating and make its objects fit the platform.
"""

from __future__ import annotations

import base64
import copy
from typing import TYPE_CHECKING, Callable, Iterable, Mapping

from cubeinstall.core.errors import ConfigError
from cubeinstall.render import naming
from cubeinstall.render.walk import image_slots
from cubeinstall.upstream.kinds import (
    PLACED_KINDS,
    cluster_scoped_kinds,
    containers,
    group_kind,
    is_crd,
    pod_spec,
)

if TYPE_CHECKING:
    from cubeinstall.site.model import Site

WEBHOOK_KINDS = {("admissionregistration.k8s.io", "MutatingWebhookConfiguration"),
                 ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration")}


def _edited(objects: Iterable[dict], edit: Callable[[dict], None]) -> list[dict]:
    result = []
    for obj in objects:
        if is_crd(obj):
            result.append(obj)
            continue
        mine = copy.deepcopy(obj)
        edit(mine)
        result.append(mine)
    return result


# -- namespace -------------------------------------------------------------------------------


def set_namespace(objects: Iterable[dict], namespace: str) -> list[dict]:
    """Put every namespaced object in ``namespace``, with the references that follow it.

    References re-pointed (as kustomize's namespace transformer does): RBAC subjects of
    kind ServiceAccount, webhook ``clientConfig.service`` and APIService ``spec.service``
    -- when they name no namespace, or name a ServiceAccount/Service of this object set
    (in the namespace it had). References to anything else are left alone.
    """
    objects = list(objects)
    scoped = cluster_scoped_kinds(objects)
    moved = {(group_kind(obj)[1], (obj.get("metadata") or {}).get("namespace") or "",
              (obj.get("metadata") or {}).get("name"))
             for obj in objects if group_kind(obj) in {("", "ServiceAccount"), ("", "Service")}}

    def follows(kind: str, ref: dict) -> bool:
        current = ref.get("namespace") or ""
        return not current or (kind, current, ref.get("name")) in moved or \
            (kind, "", ref.get("name")) in moved

    def edit(obj: dict) -> None:
        gk = group_kind(obj)
        if gk not in scoped:
            obj.setdefault("metadata", {})["namespace"] = namespace
        subjects = obj.get("subjects") if gk[0] == "rbac.authorization.k8s.io" else None
        for subject in subjects or []:
            if subject.get("kind") == "ServiceAccount" and follows("ServiceAccount", subject):
                subject["namespace"] = namespace
        services = []
        if gk in WEBHOOK_KINDS:
            services = [(w.get("clientConfig") or {}).get("service")
                        for w in obj.get("webhooks") or []]
        elif gk == ("apiregistration.k8s.io", "APIService"):
            services = [(obj.get("spec") or {}).get("service")]
        for service in services:
            if isinstance(service, dict) and follows("Service", service):
                service["namespace"] = namespace

    return _edited(objects, edit)


def retarget_namespace_mentions(objects: Iterable[dict], old: str, new: str) -> list[dict]:
    """Namespace names a program reads at run time, which ``set_namespace`` cannot know.

    Container flags (``--namespace old``, ``--webhook-namespace=old``), values of
    environment variables named ``*NAMESPACE``, and webhook ``namespaceSelector``
    expressions on ``kubernetes.io/metadata.name``: ``old`` becomes ``new``, exactly.
    """
    def flags(words: list) -> None:
        for index, word in enumerate(words):
            if not isinstance(word, str) or not word.startswith("--"):
                continue
            name, eq, value = word.partition("=")
            if name.endswith("namespace") and eq and value == old:
                words[index] = f"{name}={new}"
            elif name.endswith("namespace") and not eq and words[index + 1:index + 2] == [old]:
                words[index + 1] = new

    def edit(obj: dict) -> None:
        spec = pod_spec(obj)
        for container in containers(spec) if spec is not None else ():
            for key in ("command", "args"):
                if isinstance(container.get(key), list):
                    flags(container[key])
            for variable in container.get("env") or []:
                named = str(variable.get("name", "")).endswith("NAMESPACE")
                if named and variable.get("value") == old:
                    variable["value"] = new
        webhooks = obj.get("webhooks") if group_kind(obj) in WEBHOOK_KINDS else None
        for webhook in webhooks or []:
            selector = webhook.get("namespaceSelector") or {}
            for expression in selector.get("matchExpressions") or []:
                if expression.get("key") == "kubernetes.io/metadata.name":
                    expression["values"] = [new if value == old else value
                                            for value in expression.get("values") or []]

    return _edited(objects, edit)


# -- images -------------------------------------------------------------------------------------


def pin_images(objects: Iterable[dict], pins: Mapping[str, str]) -> list[dict]:
    """Give images of the pinned repositories their tag (``repository -> tag``).

    For upstream files that say ``:latest`` or no tag at all (argo, training-operator).
    Images pinned by digest are left as they are.
    """
    wanted = {naming.parse(repository).name: tag for repository, tag in pins.items()}

    def edit(obj: dict) -> None:
        for slot in image_slots(obj):
            try:
                ref = naming.parse(slot.get())
            except naming.InvalidReference as exc:
                name = (obj.get("metadata") or {}).get("name")
                raise ConfigError(f"{group_kind(obj)[1]} {name}: {exc}",
                                  hint="report it to cubeinstall") from None
            tag = wanted.get(ref.name)
            if tag and ref.digest is None and ref.tag != tag:
                slot.set(f"{ref.name}:{tag}")

    return _edited(objects, edit)


def secret_data(objects: Iterable[dict]) -> list[dict]:
    """Secrets' ``stringData`` written as ``data`` (base64): the API server stores only
    ``data``, so a server-side apply of ``stringData`` would differ from the live object
    on every plan."""
    def edit(obj: dict) -> None:
        if obj.get("kind") == "Secret" and obj.get("stringData"):
            encoded = {key: base64.b64encode(str(value).encode()).decode()
                       for key, value in obj.pop("stringData").items()}
            obj["data"] = {**(obj.get("data") or {}), **encoded}

    return _edited(objects, edit)


def set_pull_policy(objects: Iterable[dict], policy: str = "IfNotPresent") -> list[dict]:
    """Every container of every workload pulls with ``policy`` (air-gapped nodes: IfNotPresent)."""
    def edit(obj: dict) -> None:
        spec = pod_spec(obj)
        for container in containers(spec) if spec is not None else ():
            container["imagePullPolicy"] = policy

    return _edited(objects, edit)


# -- placement -----------------------------------------------------------------------------------


def place_on(objects: Iterable[dict], label: str, value: str = "true") -> list[dict]:
    """Workloads (not DaemonSets) run on nodes labelled ``label=value``; other selectors stay."""
    def edit(obj: dict) -> None:
        spec = pod_spec(obj)
        if spec is not None and group_kind(obj) in PLACED_KINDS:
            spec["nodeSelector"] = {**(spec.get("nodeSelector") or {}), label: value}

    return _edited(objects, edit)


# -- what every upstream-based stage applies ------------------------------------------------------


def for_site(objects: Iterable[dict], site: "Site", placement: str | None) -> list[dict]:
    """Pull policy IfNotPresent and placement (the pull secret is render.finalize's)."""
    result = set_pull_policy(objects)
    return place_on(result, placement) if placement else result
