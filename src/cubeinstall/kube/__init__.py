"""The apply engine: server-side apply with ordering, gates, diff, prune and uninstall.

Stage modules call the three entry points (imported lazily, so that reading
this package's pure modules never imports the kubernetes client):

    from cubeinstall.kube import apply_objects, plan_objects, uninstall_stage

Layout: ``client`` (the only network code), ``order`` (phases), ``readiness``
and ``diagnose`` (pure per-kind rules), ``retry`` (error classes), ``diff``,
``wait``, ``webhooks``, ``prune`` and ``apply`` (the engine).
"""

from __future__ import annotations

__all__ = ["apply_objects", "plan_objects", "uninstall_stage"]


def __getattr__(name: str):
    if name in __all__:
        from cubeinstall.kube import apply

        return getattr(apply, name)
    raise AttributeError(name)
