"""redis: Redis 7.4 for the platform (PLATFORM-FACTS item 9), on redis=true nodes.

Deployment ``redis`` and Service ``redis-master`` 6379 in infra. The password
reaches Redis only through Secret ``redis-credentials``: redis.conf (a
ConfigMap) includes the Secret's ``auth.conf`` file, so the password is never
in a ConfigMap nor on a command line (``ps`` on the node would show it), and
the probes authenticate through REDISCLI_AUTH from the same Secret.

Data: an emptyDir with the append-only file. The platform uses Redis as its
Celery broker and cache, state it rebuilds; the AOF survives a crash of the
container (the emptyDir outlives it), not the move of the pod to another node.
"""

from __future__ import annotations

from cubeinstall.render.engine import render_stage
from cubeinstall.site.model import Site
from cubeinstall.stages.workloads import (
    opaque_secret,
    pod_values,
    roll_on_config_change,
)

STAGE = "redis"
NAMESPACE = "infra"
IMAGE = "redis:7.4.6"  # 7.4.6 fixes CVE-2025-49844 (Lua use-after-free, remote code execution)
SECRET = "redis-credentials"


def render(site: Site) -> list[dict]:
    password = site.redis.password.reveal()
    objects = render_stage(STAGE, namespace=NAMESPACE, image=IMAGE, secret=SECRET,
                           **pod_values(site, STAGE))
    objects.append(opaque_secret(SECRET, NAMESPACE, {
        "password": password,
        "auth.conf": f"requirepass {config_string(password)}\n",
    }))
    return roll_on_config_change(objects)


def verify(ctx) -> list:
    """After apply: prove the password works, AUTH + PING through a port-forward."""
    if ctx.site.gates.services != "probe":
        return []
    from cubeinstall.db.redis_gate import check_redis

    return [check_redis(ctx)]  # a RedisError fails the stage, named by the runner


def config_string(value: str) -> str:
    """``value`` as a double-quoted redis.conf string (any byte survives the round trip)."""
    escaped = []
    for char in value:
        if char in '"\\':
            escaped.append("\\" + char)
        elif char.isprintable() and char.isascii():
            escaped.append(char)
        else:
            escaped.extend(f"\\x{byte:02x}" for byte in char.encode())
    return '"' + "".join(escaped) + '"'
