"""Connections to the platform's MySQL: external, or in-cluster through a port-forward.

``mysql_endpoint(ctx)`` (a context manager) says where MySQL answers:
- external: ``mysql.host:mysql.port`` as written in site.yaml, TLS when
  ``mysql.tls`` is set;
- in-cluster: ``mysql-service.infra:3306`` through a Kubernetes API
  port-forward bridged to a loopback port (see ``portforward``), open for
  the duration of the block.

``connect(endpoint, ...)`` waits for the server with backoff until a
deadline (``timeouts.object_seconds``) and turns driver errors into three
distinct, actionable errors: unreachable, access denied, unknown host. Each
names host:port and the user, never the password.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Iterator

from cubeinstall.core.errors import CubeError
from cubeinstall.core.outage import outage_of
from cubeinstall.db.portforward import describe_address
from cubeinstall.db.retry import until_deadline
from cubeinstall.site.secrets import Secret

if TYPE_CHECKING:
    from cubeinstall.core.context import RunContext
    from cubeinstall.db.portforward import LoopbackBridge
    from cubeinstall.site.model import MySQLTLS

IN_CLUSTER_NAMESPACE = "infra"
IN_CLUSTER_SERVICE = "mysql-service"
IN_CLUSTER_PORT = 3306

# Driver error numbers (MySQL client/server error codes).
ACCESS_DENIED = 1045
DB_ACCESS_DENIED = 1044
SSL_ERROR = 2026  # e.g. TLS required by the site, not offered by the server
_TRANSIENT_SERVER_ERRORS = {
    1040,  # too many connections
    1053,  # server shutdown in progress
    2003,  # can't connect (refused, timed out)
    2006,  # server has gone away
    2013,  # lost connection (e.g. the port-forward closed during the handshake)
}


class MySQLUnreachable(CubeError):
    def __init__(self, message: str, hint: str | None = None,
                 forward_failure: Exception | None = None):
        super().__init__(message, hint)
        self.forward_failure = forward_failure  # what the port-forward saw, if used


class MySQLAccessDenied(CubeError):
    pass


class MySQLUnknownHost(CubeError):
    pass


class MySQLError(CubeError):
    """Any other failure talking to MySQL (TLS, a statement the server refused)."""


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    user: str
    password: Secret
    tls: "MySQLTLS | None" = None
    bridge: "LoopbackBridge | None" = None  # set when reached through a port-forward

    @property
    def address(self) -> str:
        return describe_address(self.host, self.port, self.bridge)

    def as_user(self, user: str, password: Secret) -> "Endpoint":
        return replace(self, user=user, password=password)


@contextlib.contextmanager
def mysql_endpoint(ctx: "RunContext") -> Iterator[Endpoint]:
    """Where the site's MySQL answers, as its administrative user."""
    mysql = ctx.site.mysql
    if mysql.mode == "external":
        yield Endpoint(mysql.host or "", mysql.port, mysql.user, mysql.password, mysql.tls)
        return
    from cubeinstall.db.portforward import forward_service

    kubeconfig, context = ctx.kubeconfig_for()
    outage = outage_of(ctx, kubeconfig, context, ctx.site.timeouts.object_seconds)
    with forward_service(kubeconfig, context, IN_CLUSTER_NAMESPACE, IN_CLUSTER_SERVICE,
                         IN_CLUSTER_PORT, outage) as bridge:
        yield Endpoint(bridge.host, bridge.port, mysql.user, mysql.password, mysql.tls, bridge)


def _ssl_context(endpoint: Endpoint) -> ssl.SSLContext | None:
    tls = endpoint.tls
    if tls is None:
        return None
    context = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
    if not tls.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif endpoint.bridge is not None:
        # Through the bridge the name we dial is 127.0.0.1, not the server's:
        # verify the chain only.
        context.check_hostname = False
    return context


def _open(endpoint: Endpoint, database: str | None, timeout: float) -> Any:
    import pymysql

    return pymysql.connect(
        host=endpoint.host, port=endpoint.port, user=endpoint.user,
        password=endpoint.password.reveal(), database=database, ssl=_ssl_context(endpoint),
        connect_timeout=timeout, read_timeout=None, autocommit=True, charset="utf8mb4")


def connect(endpoint: Endpoint, *, deadline_seconds: float, database: str | None = None) -> Any:
    """An autocommit pymysql connection, once the server answers (or a clear CubeError)."""
    import pymysql

    def transient(exc: BaseException) -> bool:
        failure = endpoint.bridge.last_failure if endpoint.bridge else None
        if getattr(failure, "permanent", False):
            return False
        return bool(isinstance(exc, pymysql.err.OperationalError) and exc.args
                    and exc.args[0] in _TRANSIENT_SERVER_ERRORS and not _dns_failure(exc)
                    and not _tls_failure(exc))

    if endpoint.bridge is not None:
        endpoint.bridge.last_failure = None
    started = time.monotonic()
    try:
        return until_deadline(lambda timeout: _open(endpoint, database, timeout),
                              deadline_seconds=deadline_seconds, transient=transient)
    except pymysql.err.MySQLError as exc:
        raise describe_failure(exc, endpoint, time.monotonic() - started) from None


def _original(exc: BaseException) -> BaseException | None:
    return getattr(exc, "original_exception", None)


def _dns_failure(exc: BaseException) -> bool:
    return isinstance(_original(exc), socket.gaierror) or (exc.args and exc.args[0] == 2005)


def _tls_failure(exc: BaseException) -> bool:
    return isinstance(_original(exc), ssl.SSLError) or (exc.args and exc.args[0] == SSL_ERROR)


def describe_failure(exc: Exception, endpoint: Endpoint, waited: float) -> CubeError:
    """The user's view of a failed connection: what, where, as whom, and what to do."""
    code = exc.args[0] if exc.args else None
    who = f"user {endpoint.user!r}"
    reason = exc.args[1] if len(exc.args) > 1 else str(exc)
    if code in (ACCESS_DENIED, DB_ACCESS_DENIED):
        return MySQLAccessDenied(
            f"MySQL at {endpoint.address} denied access to {who}: {reason}",
            hint=f"check mysql.user and the password (from "
                 f"{endpoint.password.source}) in site.yaml, and the user's grants")
    if _dns_failure(exc):
        return MySQLUnknownHost(
            f"MySQL host {endpoint.host!r} (port {endpoint.port}, {who}) cannot be resolved: "
            f"{_original(exc) or reason}",
            hint="check mysql.host in site.yaml and this machine's DNS")
    if _tls_failure(exc):
        return MySQLError(
            f"TLS with MySQL at {endpoint.address} ({who}) failed: {_original(exc) or reason}",
            hint="check mysql.tls (ca_file, verify: false for a self-signed test server) "
                 "and that the server has TLS enabled")
    if code in _TRANSIENT_SERVER_ERRORS:
        failure = endpoint.bridge.last_failure if endpoint.bridge else None
        cause = getattr(failure, "message", None) or str(failure or _original(exc) or reason)
        return MySQLUnreachable(
            f"MySQL at {endpoint.address} is unreachable for {who} "
            f"(gave up after {waited:.1f}s): {cause}",
            hint=getattr(failure, "hint", None) or
            "check that MySQL is running and listening there and that no firewall blocks "
            "the port (in-cluster: the mysql stage and `kubectl -n infra get pods`); "
            "raise timeouts.object_seconds if it is only slow to start",
            forward_failure=failure)
    return MySQLError(f"MySQL at {endpoint.address} ({who}): {reason}")


def sql_error(exc: Exception, endpoint: Endpoint, doing: str) -> CubeError:
    """A statement failed: say which and where."""
    reason = exc.args[1] if len(getattr(exc, "args", ())) > 1 else str(exc)
    return MySQLError(f"MySQL at {endpoint.address} (user {endpoint.user!r}): {doing} failed: "
                      f"{reason}")
