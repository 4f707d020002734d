"""The Redis gate: after the redis stage, AUTH with the site password, then PING.

Speaks RESP over a plain socket: two commands need no client library (and
no new dependency). The outcomes a user must tell apart are distinct
errors: unreachable (refused, timed out, closed), unknown host, wrong
password (``WRONGPASS`` / ``invalid password``), ``NOAUTH`` (the server
wants a password the site does not give) and a server with no password
at all (``AUTH`` refused because none is set: the site expects one).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cubeinstall.core.change import Change
from cubeinstall.core.errors import CubeError
from cubeinstall.core.outage import outage_of
from cubeinstall.db.portforward import describe_address
from cubeinstall.db.retry import until_deadline

if TYPE_CHECKING:
    from cubeinstall.core.context import RunContext
    from cubeinstall.db.portforward import LoopbackBridge
    from cubeinstall.site.secrets import Secret

IN_CLUSTER_NAMESPACE = "infra"
IN_CLUSTER_SERVICE = "redis-master"


class RedisError(CubeError):
    pass


class RedisUnreachable(RedisError):
    pass


class RedisUnknownHost(RedisError):
    pass


class RedisWrongPassword(RedisError):
    pass


class RedisNoAuth(RedisError):
    pass


class RedisNoPasswordSet(RedisError):
    pass


class _Transient(Exception):
    """Not an answer yet: refused, closed, or -LOADING."""


@dataclass(frozen=True)
class RedisTarget:
    host: str
    port: int
    password: "Secret"
    bridge: "LoopbackBridge | None" = None

    @property
    def address(self) -> str:
        return describe_address(self.host, self.port, self.bridge)


def _encode(*parts: str) -> bytes:
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        data = part.encode("utf-8")
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _reply(stream: Any) -> str:
    """One reply line: '+OK', '-ERR ...' (bulk replies are not expected here)."""
    line = stream.readline()
    if not line:
        raise _Transient("the connection was closed before a reply")
    text = line.decode("utf-8", "replace").rstrip("\r\n")
    if text.startswith("-LOADING"):
        raise _Transient(text[1:])
    return text


def _auth_and_ping(target: RedisTarget, timeout: float) -> str:
    try:
        sock = socket.create_connection((target.host, target.port), timeout=timeout)
    except socket.gaierror as exc:
        raise RedisUnknownHost(
            f"Redis host {target.host!r} (port {target.port}) cannot be resolved: {exc}",
            hint="check redis.host in site.yaml and this machine's DNS") from None
    except OSError as exc:
        raise _Transient(str(exc)) from None
    with sock, sock.makefile("rb") as stream:
        try:
            password = target.password.reveal()
            if password:
                sock.sendall(_encode("AUTH", password))
                _check_auth(target, _reply(stream))
            sock.sendall(_encode("PING"))
            return _check_ping(target, _reply(stream))
        except OSError as exc:
            raise _Transient(str(exc)) from None


def _check_auth(target: RedisTarget, reply: str) -> None:
    if reply == "+OK":
        return
    upper = reply.upper()
    if upper.startswith("-WRONGPASS") or "INVALID PASSWORD" in upper:
        raise RedisWrongPassword(
            f"Redis at {target.address} rejected the site password (from "
            f"{target.password.source}): {reply[1:]}",
            hint="set redis.password in site.yaml to the server's requirepass, or re-run the "
                 "redis stage so the server gets the site password")
    if "NO PASSWORD" in upper or "WITHOUT ANY PASSWORD" in upper:
        raise RedisNoPasswordSet(
            f"Redis at {target.address} has no password set, but the site gives one: {reply[1:]}",
            hint="configure requirepass on the server (the platform authenticates), "
                 "or re-run the redis stage")
    raise RedisError(f"Redis at {target.address}: AUTH failed: {reply[1:]}")


def _check_ping(target: RedisTarget, reply: str) -> str:
    if reply == "+PONG":
        return "PONG"
    if reply.upper().startswith("-NOAUTH"):
        raise RedisNoAuth(
            f"Redis at {target.address} requires a password (NOAUTH) but the site gives none",
            hint="set redis.password in site.yaml (e.g. ${env:REDIS_PASSWORD})")
    raise RedisError(f"Redis at {target.address}: PING answered {reply!r}")


def check(target: RedisTarget, *, deadline_seconds: float) -> str:
    """AUTH + PING, waiting for a starting server until the deadline; 'PONG' or a RedisError."""

    def transient(exc: BaseException) -> bool:
        failure = target.bridge.last_failure if target.bridge else None
        return isinstance(exc, _Transient) and not getattr(failure, "permanent", False)

    try:
        return until_deadline(lambda timeout: _auth_and_ping(target, timeout),
                              deadline_seconds=deadline_seconds, transient=transient)
    except _Transient as exc:
        failure = target.bridge.last_failure if target.bridge else None
        raise RedisUnreachable(
            f"Redis at {target.address} is unreachable: "
            f"{getattr(failure, 'message', None) or exc}",
            hint=getattr(failure, "hint", None) or
            "check that Redis runs and listens there (in-cluster: the redis stage and "
            "`kubectl -n infra get pods`) and that no firewall blocks the port") from None


def check_redis(ctx: "RunContext") -> Change:
    """The gate the redis stage runs last: a Change on success, a RedisError otherwise."""
    redis = ctx.site.redis
    deadline = ctx.site.timeouts.object_seconds
    if redis.mode == "external":
        target = RedisTarget(redis.host or "", redis.port, redis.password)
        check(target, deadline_seconds=deadline)
    else:
        from cubeinstall.db.portforward import forward_service

        kubeconfig, context = ctx.kubeconfig_for()
        outage = outage_of(ctx, kubeconfig, context, ctx.site.timeouts.object_seconds)
        with forward_service(kubeconfig, context, IN_CLUSTER_NAMESPACE, IN_CLUSTER_SERVICE,
                             redis.port, outage) as bridge:
            target = RedisTarget(bridge.host, bridge.port, redis.password, bridge)
            check(target, deadline_seconds=deadline)
    return Change(f"redis {target.address}", "unchanged", "AUTH with the site password, PING: PONG")
