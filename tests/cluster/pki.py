"""Certificates and kubeconfigs for the local test control plane.

A real kube-apiserver only talks TLS and authenticates clients by
certificate, so the test cluster needs a tiny PKI: one CA, one serving
certificate for every loopback component, a client certificate per
identity (admin, controller-manager, scheduler, kwok) and the service
account signing key.  Everything is made fresh for each cluster, in
memory, with ECDSA P-256 keys: generating them takes milliseconds where
RSA-2048 would take a noticeable part of the start-up time.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: Names a pod (or a test) may use to reach the API server.
SERVING_DNS_NAMES = (
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
    "localhost",
)
SERVING_IPS = ("127.0.0.1", "::1")

_VALIDITY = dt.timedelta(days=30)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass(frozen=True)
class CertKey:
    """A PEM certificate and its PEM private key."""

    cert_pem: bytes
    key_pem: bytes


class CertificateAuthority:
    """A throw-away CA that signs the cluster's serving and client certs."""

    def __init__(self, common_name: str = "cubeinstall-test-ca") -> None:
        self._key = _new_key()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = dt.datetime.now(dt.timezone.utc)
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()),
                critical=False,
            )
            .sign(self._key, hashes.SHA256())
        )

    @classmethod
    def load(cls, cert_pem: bytes, key_pem: bytes) -> CertificateAuthority:
        """The CA of an existing cluster (its ca.crt and ca.key), to sign more certs."""
        ca = cls.__new__(cls)
        ca._cert = x509.load_pem_x509_certificate(cert_pem)
        ca._key = serialization.load_pem_private_key(key_pem, password=None)
        return ca

    @property
    def cert_pem(self) -> bytes:
        return self._cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return _key_pem(self._key)

    def issue(
        self,
        common_name: str,
        *,
        organizations: tuple[str, ...] = (),
        dns_names: tuple[str, ...] = (),
        ip_addresses: tuple[str, ...] = (),
        server: bool = False,
        client: bool = False,
    ) -> CertKey:
        """Sign a new leaf certificate (serving and/or client usage)."""
        key = _new_key()
        attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
        usages = []
        if server:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        if client:
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        now = dt.datetime.now(dt.timezone.utc)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attrs))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_encipherment=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    content_commitment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
        )
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        return CertKey(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


@dataclass(frozen=True)
class Pki:
    """Paths of every PKI file the control plane processes read."""

    dir: Path
    ca_cert: Path
    serving_cert: Path
    serving_key: Path
    sa_key: Path
    sa_pub: Path
    clients: dict[str, CertKey]

    @property
    def ca_key(self) -> Path:
        return self.dir / "ca.key"

    def client_files(self, name: str) -> tuple[Path, Path]:
        """(certificate, key) files of a client identity, e.g. "admin"."""
        return self.dir / f"{name}.crt", self.dir / f"{name}.key"


#: identity name -> (CN, organizations).  The controller-manager and the
#: scheduler get their own users so RBAC treats them like on a real cluster.
CLIENT_IDENTITIES = {
    "admin": ("cubeinstall-test-admin", ("system:masters",)),
    "controller-manager": ("system:kube-controller-manager", ()),
    "scheduler": ("system:kube-scheduler", ()),
    "kwok": ("kwok-controller", ("system:masters",)),
    # The apiserver's identity towards aggregated API servers.
    "front-proxy": ("front-proxy-client", ()),
    # The apiserver's identity towards kubelets (logs, exec, port-forward of a real node).
    "kubelet-client": ("kube-apiserver-kubelet-client", ("system:masters",)),
}
FRONT_PROXY_CN = CLIENT_IDENTITIES["front-proxy"][0]


def write_pki(directory: Path, service_ip: str) -> Pki:
    """Create the CA, certificates and service-account keys under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = CertificateAuthority()
    serving = ca.issue(
        "kube-apiserver",
        dns_names=SERVING_DNS_NAMES,
        ip_addresses=SERVING_IPS + (service_ip,),
        server=True,
    )
    clients = {
        name: ca.issue(cn, organizations=orgs, client=True)
        for name, (cn, orgs) in CLIENT_IDENTITIES.items()
    }
    sa_key = _new_key()
    sa_pub = sa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    files = {
        "ca.crt": ca.cert_pem,
        "serving.crt": serving.cert_pem,
        "serving.key": serving.key_pem,
        "sa.key": _key_pem(sa_key),
        "sa.pub": sa_pub,
    }
    for name, pair in clients.items():
        files[f"{name}.crt"] = pair.cert_pem
        files[f"{name}.key"] = pair.key_pem
    files["ca.key"] = ca.key_pem  # lets the controller-manager sign CSRs
    for filename, data in files.items():
        path = directory / filename
        path.write_bytes(data)
        path.chmod(0o600)
    return Pki(
        dir=directory,
        ca_cert=directory / "ca.crt",
        serving_cert=directory / "serving.crt",
        serving_key=directory / "serving.key",
        sa_key=directory / "sa.key",
        sa_pub=directory / "sa.pub",
        clients=clients,
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def write_kubeconfig(
    path: Path,
    *,
    server: str,
    ca_pem: bytes,
    client: CertKey,
    cluster_name: str = "cubeinstall-test",
    user: str = "admin",
) -> Path:
    """Write a self-contained kubeconfig (certificates embedded).

    JSON is valid YAML, so kubectl and every client library read it, and
    writing it needs nothing beyond the standard library.
    """
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": cluster_name,
                "cluster": {"server": server, "certificate-authority-data": _b64(ca_pem)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": _b64(client.cert_pem),
                    "client-key-data": _b64(client.key_pem),
                },
            }
        ],
        "contexts": [{"name": cluster_name, "context": {"cluster": cluster_name, "user": user}}],
        "current-context": cluster_name,
        "preferences": {},
    }
    path.write_text(json.dumps(config, indent=2) + "\n")
    path.chmod(0o600)
    return path
