"""Parts of cube-studio's start.sh run against a test cluster with the kubectl built for
the tests, so the objects carry kubectl's own managedFields (what `adopt` takes over).
What start.sh creates is read by tests/upstream_install.py."""

from __future__ import annotations

from pathlib import Path

from tests.cluster.kubectl import kubectl
from tests.helpers import CUBE_INSTALL


def create_namespaces_and_secrets(kubeconfig: Path) -> None:
    """create_ns_secret.sh: each namespace of its loop, its hubsecret, its istio label."""
    script = (CUBE_INSTALL / "create_ns_secret.sh").read_text()
    [loop] = [line for line in script.splitlines() if line.startswith("for namespace in")]
    for namespace in (word.strip("'\"") for word in loop.split()[3:]):
        if namespace != "kube-system":
            kubectl(kubeconfig, "create", "ns", namespace)
        kubectl(kubeconfig, "create", "secret", "docker-registry", "hubsecret",
                "--docker-server=https://index.docker.io/v1/", "--docker-username=xxx",
                "--docker-password=xxxx", "-n", namespace)
        kubectl(kubeconfig, "label", "ns", namespace, "istio-injection=disabled", "--overwrite")


def claims(core) -> dict[tuple[str, str], tuple[str, str, str]]:
    """(namespace, claim) -> (volume name, volume uid, claim phase), read with a CoreV1Api."""
    volumes = {pv.metadata.name: pv.metadata.uid for pv in core.list_persistent_volume().items}
    return {(c.metadata.namespace, c.metadata.name): (
                c.spec.volume_name, volumes.get(c.spec.volume_name), c.status.phase)
            for c in core.list_persistent_volume_claim_for_all_namespaces().items}
