"""kwok Stages that make a pod fail the way a kubelet reports it, on request.

kwok's own stages (pod-ready.yaml...) make every pod Ready at once, so a
diagnosis of ImagePullBackOff or CrashLoopBackOff could never be seen on the
test cluster. A pod whose template carries ``SIMULATE_ANNOTATION`` gets
instead, on any kwok node:

- ``image-pull-backoff``: phase Pending, each container waiting with reason
  ImagePullBackOff and message ``Back-off pulling image "<image>"``, and a
  Warning event Failed "Error: ErrImagePull";
- ``crash-loop-backoff``: phase Running, each container waiting with reason
  CrashLoopBackOff after CRASH_RESTARTS restarts, its last state terminated
  with exit code CRASH_EXIT_CODE, and a Warning event BackOff.

Crash logs are the ClusterLogs rule's FAKE_LOG_LINES, read through the API
server on a node at KUBELET_ADDRESS (see nodes.py).

Why kwok picks these stages and never pod-ready for such pods: among the
stages matching a pod, kwok v0.8.0 (pkg/utils/lifecycle Lifecycle.Match)
draws by weight and drops every stage of weight 0 as soon as one weighs
more; pod-ready weighs 0, these weigh 1. Their templates hold no "now"
(times are the pod's creationTimestamp), so re-playing a stage on the pod's
own update patches nothing and the stage settles after one round.
"""

from __future__ import annotations

import json
from pathlib import Path

SIMULATE_ANNOTATION = "cubeinstall.test/simulate"
IMAGE_PULL_BACKOFF = "image-pull-backoff"
CRASH_LOOP_BACKOFF = "crash-loop-backoff"
CRASH_EXIT_CODE = 1
CRASH_RESTARTS = 3

# Shared head of both status templates: conditions of a pod whose containers are not ready.
_NOT_READY = """\
{{ $created := .metadata.creationTimestamp }}
conditions:
- type: Initialized
  status: "True"
  lastTransitionTime: {{ $created | Quote }}
{{ range $type := list "Ready" "ContainersReady" }}
- type: {{ $type }}
  status: "False"
  reason: ContainersNotReady
  message: "containers with unready status: [{{ range $i, $c := $.spec.containers }}{{ if $i }} {{ end }}{{ $c.name }}{{ end }}]"
  lastTransitionTime: {{ $created | Quote }}
{{ end }}
{{ with NodeIPsWith .spec.nodeName }}
hostIP: {{ index . 0 | Quote }}
{{ end }}
startTime: {{ $created | Quote }}
"""

_IMAGE_PULL_STATUS = _NOT_READY + """\
phase: Pending
containerStatuses:
{{ range .spec.containers }}
- name: {{ .name | Quote }}
  image: {{ .image | Quote }}
  imageID: ""
  ready: false
  started: false
  restartCount: 0
  state:
    waiting:
      reason: ImagePullBackOff
      message: {{ printf "Back-off pulling image %q" .image | Quote }}
{{ end }}
"""

_CRASH_LOOP_STATUS = _NOT_READY + f"""\
phase: Running
containerStatuses:
{{{{ range .spec.containers }}}}
- name: {{{{ .name | Quote }}}}
  image: {{{{ .image | Quote }}}}
  imageID: ""
  ready: false
  started: false
  restartCount: {CRASH_RESTARTS}
  state:
    waiting:
      reason: CrashLoopBackOff
      message: {{{{ printf "back-off 40s restarting failed container=%s pod=%s_%s(%s)" .name $.metadata.name $.metadata.namespace $.metadata.uid | Quote }}}}
  lastState:
    terminated:
      exitCode: {CRASH_EXIT_CODE}
      reason: Error
      startedAt: {{{{ $.metadata.creationTimestamp | Quote }}}}
      finishedAt: {{{{ $.metadata.creationTimestamp | Quote }}}}
{{{{ end }}}}
"""


def _stage(mode: str, phases: list[str], event: dict, status_template: str) -> dict:
    return {
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "Stage",
        "metadata": {"name": f"pod-simulate-{mode}"},
        "spec": {
            "resourceRef": {"apiGroup": "v1", "kind": "Pod"},
            "selector": {
                "matchAnnotations": {SIMULATE_ANNOTATION: mode},
                "matchExpressions": [
                    {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"},
                    {"key": ".status.phase", "operator": "In", "values": phases},
                ],
            },
            "weight": 1,  # > pod-ready's 0: see the module docstring
            "next": {"event": event, "statusTemplate": status_template},
        },
    }


STAGES = (
    _stage(IMAGE_PULL_BACKOFF, ["Pending"],
           {"type": "Warning", "reason": "Failed", "message": "Error: ErrImagePull"},
           _IMAGE_PULL_STATUS),
    _stage(CRASH_LOOP_BACKOFF, ["Pending", "Running"],
           {"type": "Warning", "reason": "BackOff",
            "message": "Back-off restarting failed container"},
           _CRASH_LOOP_STATUS),
)


def write_stages(workdir: Path) -> Path:
    """The stages as one kwok --config file (JSON documents are YAML documents)."""
    path = workdir / "kwok-simulate.yaml"
    path.write_text("".join(f"---\n{json.dumps(stage)}\n" for stage in STAGES))
    return path
