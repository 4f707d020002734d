"""Where images sit in Kubernetes objects: one walker for the inventory and the rewrite.

The walk is generic rather than per kind, so a PodSpec is found wherever it sits
(Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob's jobTemplate, and
any custom resource that embeds a pod template, e.g. training-operator jobs):

- every mapping holding a ``containers`` / ``initContainers`` / ``ephemeralContainers``
  list (or an Argo template's ``sidecars``) of mappings with a string ``image``;
- an Argo template's ``container`` / ``script`` mapping with a string ``image``;
- prometheus-operator resources (Prometheus, Alertmanager, ThanosRuler,
  PrometheusAgent) with ``spec.image``;
- container arguments that name an image: ``--prometheus-config-reloader=IMAGE``
  (prometheus-operator), ``--executor-image IMAGE`` (Argo workflow-controller).

CustomResourceDefinitions are skipped: their schemas describe containers but run none.
Images built from a "hub" plus a tag inside a ConfigMap (istio's sidecar injector) are
not references and are out of reach here: the stage that renders them sets them with
``naming.target_name``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers", "sidecars")
SINGLE_CONTAINERS = ("container", "script")
OPERATOR_KINDS = {"Prometheus", "Alertmanager", "ThanosRuler", "PrometheusAgent"}
IMAGE_FLAGS = ("--prometheus-config-reloader", "--config-reloader-image", "--executor-image")


@dataclass(frozen=True)
class Slot:
    """One place holding an image reference: ``holder[key]``, after an optional prefix."""

    holder: Any  # dict or list
    key: Any  # str or int
    prefix: str = ""

    def get(self) -> str:
        return self.holder[self.key][len(self.prefix):]

    def set(self, image: str) -> None:
        self.holder[self.key] = self.prefix + image


def image_slots(obj: dict) -> Iterator[Slot]:
    """Every image slot of one Kubernetes object (mutating a slot edits ``obj``)."""
    if not isinstance(obj, dict) or obj.get("kind") == "CustomResourceDefinition":
        return
    spec = obj.get("spec")
    if (obj.get("kind") in OPERATOR_KINDS
            and str(obj.get("apiVersion", "")).startswith("monitoring.coreos.com/")
            and isinstance(spec, dict) and _is_image(spec.get("image"))):
        yield Slot(spec, "image")
    yield from _walk(obj)


def _walk(node: Any) -> Iterator[Slot]:
    if isinstance(node, list):
        for item in node:
            yield from _walk(item)
        return
    if not isinstance(node, dict):
        return
    for key in CONTAINER_LISTS:
        containers = node.get(key)
        if isinstance(containers, list):
            for container in containers:
                yield from _container_slots(container)
    for key in SINGLE_CONTAINERS:
        yield from _container_slots(node.get(key))
    for value in node.values():
        if isinstance(value, (dict, list)):
            yield from _walk(value)


def _container_slots(container: Any) -> Iterator[Slot]:
    if not isinstance(container, dict) or not _is_image(container.get("image")):
        return
    yield Slot(container, "image")
    for key in ("command", "args"):
        words = container.get(key)
        if isinstance(words, list):
            yield from _flag_slots(words)


def _flag_slots(words: list) -> Iterator[Slot]:
    for index, word in enumerate(words):
        if not isinstance(word, str):
            continue
        for flag in IMAGE_FLAGS:
            if word.startswith(flag + "=") and _is_image(word[len(flag) + 1:]):
                yield Slot(words, index, prefix=flag + "=")
            elif word == flag and index + 1 < len(words) and _is_image(words[index + 1]):
                yield Slot(words, index + 1)


def _is_image(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def images_in_objects(objects: Iterable[dict]) -> set[str]:
    """Every image reference, as written, of every object (pure)."""
    return {slot.get() for obj in objects for slot in image_slots(obj)}


def is_crd(obj: dict) -> bool:
    return obj.get("kind") == "CustomResourceDefinition"


def writable_copy(obj: dict) -> dict:
    """A copy we may change. CRDs (up to megabytes, no images, no pods) are passed
    through as they are: copying them cost more than the whole rest of a render."""
    return obj if is_crd(obj) else copy.deepcopy(obj)


def pod_specs(obj: dict) -> list[dict]:
    """Mappings holding a pod's ``containers`` list of images: a PodSpec wherever it sits."""
    found: list[dict] = []
    stack: list = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            containers = item.get("containers")
            if isinstance(containers, list) and any(
                    isinstance(c, dict) and isinstance(c.get("image"), str) for c in containers):
                found.append(item)
            stack.extend(v for v in item.values() if isinstance(v, (dict, list)))
    return found
