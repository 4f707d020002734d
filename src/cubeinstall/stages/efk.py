"""efk: Elasticsearch, Filebeat and Kibana 7.17 in namespace logging (PLATFORM-FACTS item 12).

- Elasticsearch: one node (StatefulSet, ``discovery.type=single-node``) on a
  logging=true node. Its data lives on the shared storage (PV
  ``logging-elasticsearch-data``, Retain), so it survives the pod moving to
  another logging node, like every other service's data under /data/k8s.
  ``node.store.allow_mmap=false`` spares a privileged init container raising the
  node's vm.max_map_count.
- Filebeat: a DaemonSet on EVERY node (logs are produced everywhere), reading
  /var/log and the container logs where the site's runtime writes them.
- Kibana: Service ``kibana`` 5601, served under /kibana. The gateway strips
  the /kibana/ prefix (its route rewrites to "/"), so Kibana is told its
  public base path but not to expect it on requests (rewriteBasePath false).

No security layer (X-Pack security off, as the platform ships it): anyone who
reaches the gateway reads every log through /kibana/.
"""

from __future__ import annotations

import re

from cubeinstall.render.engine import render_stage
from cubeinstall.site.model import Site
from cubeinstall.stages.workloads import host_volume, pod_values, roll_on_config_change

STAGE = "efk"
NAMESPACE = "logging"
VERSION = "7.17.28"
IMAGES = {
    "elasticsearch": f"docker.elastic.co/elasticsearch/elasticsearch:{VERSION}",
    "kibana": f"docker.elastic.co/kibana/kibana:{VERSION}",
    "filebeat": f"docker.elastic.co/beats/filebeat:{VERSION}",
    "busybox": "busybox:1.36.1",
}
KIBANA_BASE_PATH = "/kibana"
KIBANA_REWRITE_BASE_PATH = False  # the gateway's kibana route strips the prefix


# Where each runtime writes container logs: the files Filebeat reads, the
# kubernetes-metadata matcher's prefix, and host directories beyond /var/log.
CONTAINER_LOGS = {
    "docker": {"paths": ["/var/lib/docker/containers/*/*.log"],
               "matcher": "/var/lib/docker/containers/",
               "host_dirs": ["/var/lib/docker/containers"]},
    # /var/log/containers/*.log link to /var/log/pods: both are inside /var/log.
    "containerd": {"paths": ["/var/log/containers/*.log"],
                   "matcher": "/var/log/containers/",
                   "host_dirs": []},
}


def render(site: Site) -> list[dict]:
    heap = site.logging.elasticsearch_heap
    objects = render_stage(
        STAGE, namespace=NAMESPACE, images=IMAGES,
        container_logs=CONTAINER_LOGS[site.runtime],
        heap=heap, memory=container_memory(heap),
        kibana_base_path=KIBANA_BASE_PATH, kibana_rewrite_base_path=KIBANA_REWRITE_BASE_PATH,
        **pod_values(site, STAGE))
    objects += host_volume(site, pv_name="logging-elasticsearch-data", namespace=NAMESPACE,
                           claim="elasticsearch-data", size="100Gi",
                           subpath="logging/elasticsearch")
    return roll_on_config_change(objects)


def container_memory(heap: str) -> str:
    """Twice the JVM heap: Lucene lives in the file cache beside the heap."""
    number, unit = re.fullmatch(r"([0-9]+)([mg])", heap).groups()
    return f"{int(number) * 2}{'Mi' if unit == 'm' else 'Gi'}"
