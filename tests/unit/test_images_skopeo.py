"""skopeo helpers: error classification, the temporary auth file, endpoint masking."""

from __future__ import annotations

import json
import stat

import pytest

from cubeinstall.core.errors import CubeError
from cubeinstall.images import skopeo
from cubeinstall.images.registry_client import Endpoint
from cubeinstall.images.status import is_loopback

CLASSIFY = [
    ('time="x" level=fatal msg="initializing source docker://a/b:1: reading manifest 1 in '
     'a/b: manifest unknown: manifest unknown"', "not-found"),
    ('level=fatal msg="trying to reuse blob: unauthorized: authentication required"', "auth"),
    ('level=fatal msg="pinging container registry h:1: Get \\"https://h:1/v2/\\": '
     'x509: certificate signed by unknown authority"', "tls"),
    ('level=fatal msg="writing blob: Patch \\"https://h/v2/\\": read tcp: '
     'connection reset by peer"', "transient"),
    ('level=fatal msg="reading manifest: toomanyrequests: rate limit"', "transient"),
    ('level=fatal msg="pinging container registry 127.0.0.1:9: dial tcp 127.0.0.1:9: connect: '
     'connection refused"', "transient"),
    ("something unexpected", "other"),
]


@pytest.mark.parametrize("stderr,kind", CLASSIFY)
def test_classify(stderr, kind):
    found, message = skopeo.classify(stderr)
    assert found == kind
    assert "level=fatal" not in message


def test_destination_writes_a_private_auth_file_and_removes_it(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    endpoint = Endpoint("harbor.example.com:8443", "robot", "pw-not-on-cmdline", ca)
    with skopeo.destination(endpoint) as dest:
        assert stat.S_IMODE(dest.authfile.stat().st_mode) == 0o600
        assert stat.S_IMODE(dest.authfile.parent.stat().st_mode) == 0o700
        auths = json.loads(dest.authfile.read_text())["auths"]
        assert list(auths) == ["harbor.example.com:8443"]
        assert (dest.cert_dir / "ca.crt").read_text() == ca.read_text()
        options = dest.copy_options()
        assert f"--dest-cert-dir={dest.cert_dir}" in options
        assert not any("pw-not-on-cmdline" in option for option in options)
        workdir = dest.authfile.parent
    assert not workdir.exists()


def test_insecure_destination_skips_verification_and_needs_no_ca():
    with skopeo.destination(Endpoint("h:1", insecure=True)) as dest:
        assert dest.authfile is None and dest.cert_dir is None
        assert dest.copy_options() == ["--dest-tls-verify=false"]


def test_unreadable_ca_file_is_named(tmp_path):
    with pytest.raises(CubeError, match="nope.pem"):
        with skopeo.destination(Endpoint("h:1", ca_file=tmp_path / "nope.pem")):
            pass


def test_endpoint_repr_hides_the_password():
    assert "pa55word-secret" not in repr(Endpoint("h:1", "user", "pa55word-secret"))


@pytest.mark.parametrize("host,loopback", [
    ("127.0.0.1:5000", True), ("localhost:5000", True), ("localhost", True), ("[::1]:5000", True),
    ("127.3.4.5", True), ("harbor.example.com", False), ("10.0.0.5:5000", False),
    ("gcr.io", False),
])
def test_loopback_sources(host, loopback):
    assert is_loopback(host) is loopback
