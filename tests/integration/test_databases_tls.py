"""TLS settings of site.mysql.tls reach the driver: a MariaDB that requires TLS."""

from __future__ import annotations

import pytest

from cubeinstall.db.connection import Endpoint, MySQLError, connect
from cubeinstall.site.model import MySQLTLS
from cubeinstall.site.secrets import Secret

pytestmark = pytest.mark.mysql

TLS_USER, TLS_PASSWORD = "tls_only", "tls-Pw-123"


@pytest.fixture(scope="module")
def tls_mariadb(tmp_path_factory):
    from tests.cluster.pki import CertificateAuthority
    from tests.servers.mariadb import start_mariadb

    workdir = tmp_path_factory.mktemp("mariadb-tls")
    ca = CertificateAuthority("cubeinstall-test-mysql-ca")
    leaf = ca.issue("mysql", ip_addresses=("127.0.0.1",), server=True)
    files = {"ca.pem": ca.cert_pem, "server.pem": leaf.cert_pem, "server.key": leaf.key_pem,
             "other-ca.pem": CertificateAuthority("someone-else").cert_pem}
    for name, data in files.items():
        (workdir / name).write_bytes(data)
    server = start_mariadb(workdir, (f"--ssl-ca={workdir / 'ca.pem'}",
                                     f"--ssl-cert={workdir / 'server.pem'}",
                                     f"--ssl-key={workdir / 'server.key'}"))
    server.query("CREATE USER %s@'%%' IDENTIFIED BY %s REQUIRE SSL", (TLS_USER, TLS_PASSWORD))
    yield server, workdir
    server.process.stop()


def endpoint(server, tls: MySQLTLS | None) -> Endpoint:
    return Endpoint(server.host, server.port, TLS_USER, Secret(TLS_PASSWORD, "test value"), tls)


def cipher(conn) -> str:
    with conn.cursor() as cursor:
        cursor.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        return cursor.fetchone()[1]


def test_verified_tls_with_the_site_ca(tls_mariadb):
    server, certs = tls_mariadb
    with connect(endpoint(server, MySQLTLS(ca_file=certs / "ca.pem")), deadline_seconds=10) as conn:
        assert cipher(conn)  # the session is encrypted


def test_tls_without_verification(tls_mariadb):
    server, _ = tls_mariadb
    with connect(endpoint(server, MySQLTLS(verify=False)), deadline_seconds=10) as conn:
        assert cipher(conn)


def test_server_certificate_from_another_ca_is_refused(tls_mariadb):
    server, certs = tls_mariadb
    with pytest.raises(MySQLError) as failed:
        connect(endpoint(server, MySQLTLS(ca_file=certs / "other-ca.pem")), deadline_seconds=30)
    text = str(failed.value)
    assert f"TLS with MySQL at 127.0.0.1:{server.port} (user 'tls_only') failed" in text
    assert "CERTIFICATE_VERIFY_FAILED" in text and "check mysql.tls (ca_file" in text


def test_tls_required_by_the_site_but_not_offered(mariadb):
    """The session's plain MariaDB has no certificate: a site asking for TLS must not fall back."""
    plain = Endpoint(mariadb.host, mariadb.port, "root", Secret(mariadb.root_password, "test"),
                     MySQLTLS(verify=False))
    with pytest.raises(MySQLError) as failed:
        connect(plain, deadline_seconds=30)
    text = str(failed.value)
    assert "TLS with MySQL at" in text and "doesn't support it" in text


def test_without_site_tls_a_require_ssl_user_still_gets_tls_opportunistically(tls_mariadb):
    """No tls section: the driver's 'preferred' mode encrypts when the server offers it."""
    server, _ = tls_mariadb
    with connect(endpoint(server, None), deadline_seconds=10) as conn:
        assert cipher(conn)
