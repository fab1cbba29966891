"""STAND-IN for the Kubernetes API server as `bakery status` meets it over the network
(bakery's tests; not Kubernetes): HTTPS on 127.0.0.1 in a thread, GET /api/v1/nodes only.
What it enforces, from kube-apiserver's serving and authentication (k8s.io/apiserver
pkg/server/secure_serving.go, pkg/authentication/request/x509/x509.go; kubeadm's RBAC binding
of kubeadm:cluster-admins to cluster-admin), stricter where that is simpler:

- TLS: the server presents `server_cert` (signed by the cluster CA, with IP/DNS SANs as kubeadm's
  apiserver certificate has them); a client certificate is REQUIRED and verified against
  `tls_client_cas` at the handshake (stricter: kube-apiserver only requests one and lets the
  authenticator judge it), so a certificate from another CA, none, or one that is not for client
  authentication ends the handshake;
- authentication: the client certificate must be issued and signed by `authn_ca` (the API
  server's --client-ca-file) and be within its validity, else 401 Unauthorized with a Status;
- authorization: user kubernetes-admin in group kubeadm:cluster-admins (or system:masters) may
  list nodes, anyone else gets 403 Forbidden with a Status, as RBAC answers;
- GET /api/v1/nodes answers a NodeList of the nodes the test set (`responses`: one node list
  per request, the last one repeated); any other method or path is 404 / 405.
"""
from __future__ import annotations

import datetime
import http.server
import ipaddress
import json
import os
import ssl
import tempfile
import threading
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ADMIN_GROUPS = {"kubeadm:cluster-admins", "system:masters"}


@dataclass
class Issuer:
    cert: x509.Certificate
    key: object

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @classmethod
    def from_pem(cls, cert_pem: str, key_pem: str) -> Issuer:
        return cls(x509.load_pem_x509_certificate(cert_pem.encode()),
                   serialization.load_pem_private_key(key_pem.encode(), password=None))

    @classmethod
    def new_ca(cls, cn: str = "another-ca") -> Issuer:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        now = datetime.datetime.now(datetime.UTC)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=30))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False, content_commitment=False,
                                             data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                             crl_sign=False, encipher_only=False, decipher_only=False),
                               critical=True)
                .sign(key, hashes.SHA256()))
        return cls(cert, key)

    def issue(self, *, cn: str, orgs: tuple[str, ...] = (), ips: tuple[str, ...] = (),
              dns: tuple[str, ...] = (), server: bool = False) -> tuple[bytes, bytes]:
        """(certificate PEM, key PEM) of a leaf signed by this CA."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
                            + [x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        b = (x509.CertificateBuilder().subject_name(subject).issuer_name(self.cert.subject)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                                   else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
        names = [x509.IPAddress(ipaddress.ip_address(i)) for i in ips] + [x509.DNSName(d) for d in dns]
        if names:
            b = b.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = b.sign(self.key, hashes.SHA256())
        return (cert.public_bytes(serialization.Encoding.PEM),
                key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))


def node(name: str, ready: bool | None = True, kubelet: str = "v1.36.3") -> dict:
    """A Node as the API returns it (k8s.io/api core/v1); ready None: no Ready condition yet."""
    conditions = [] if ready is None else [{"type": "Ready", "status": "True" if ready else "False",
                                            "reason": "KubeletReady" if ready else "KubeletNotReady"}]
    conditions.insert(0, {"type": "MemoryPressure", "status": "False"})
    return {"metadata": {"name": name}, "status": {"conditions": conditions, "nodeInfo": {"kubeletVersion": kubelet}}}


def _status(code: int, reason: str, message: str) -> dict:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}


@dataclass
class ApiServer:
    server_cert: tuple[bytes, bytes]
    tls_client_cas: list[bytes]
    authn_ca: Issuer
    responses: list[list[dict]] = field(default_factory=list)
    requests: list[tuple[str, int]] = field(default_factory=list)  # (path, status) answered
    handshake_errors: list[str] = field(default_factory=list)

    def __post_init__(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.verify_mode = ssl.CERT_REQUIRED
        for pem in self.tls_client_cas:
            ctx.load_verify_locations(cadata=pem.decode())
        folder = tempfile.mkdtemp()
        cert, key = os.path.join(folder, "s.crt"), os.path.join(folder, "s.key")
        with open(cert, "wb") as f:
            f.write(self.server_cert[0])
        with open(key, "wb") as f:
            f.write(self.server_cert[1])
        ctx.load_cert_chain(cert, key)
        os.remove(cert)
        os.remove(key)
        os.rmdir(folder)
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, code: int, doc: dict) -> None:
                body = json.dumps(doc).encode()
                api.requests.append((self.path, code))
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                user, groups = api.authenticate(self.connection.getpeercert(binary_form=True))
                if user is None:
                    return self._send(401, _status(401, "Unauthorized", "Unauthorized"))
                if user != "kubernetes-admin" or not (set(groups) & ADMIN_GROUPS):
                    return self._send(403, _status(403, "Forbidden", f'nodes is forbidden: User "{user}" cannot '
                                                   'list resource "nodes" in API group "" at the cluster scope'))
                if self.path != "/api/v1/nodes":
                    return self._send(404, _status(404, "NotFound", "the server could not find the requested "
                                                   "resource"))
                served = sum(1 for p, c in api.requests if p == "/api/v1/nodes" and c == 200)
                items = api.responses[min(served, len(api.responses) - 1)] if api.responses else []
                self._send(200, {"kind": "NodeList", "apiVersion": "v1", "metadata": {}, "items": items})

            def do_POST(self):
                self._send(405, _status(405, "MethodNotAllowed", "not served by this stand-in"))

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self):
                sock, addr = self.socket.accept()
                sock.settimeout(10)
                try:
                    tls = ctx.wrap_socket(sock, server_side=True)
                    tls.settimeout(None)
                    return tls, addr
                except (ssl.SSLError, OSError) as exc:
                    api.handshake_errors.append(getattr(exc, "reason", None) or str(exc))
                    sock.close()
                    raise

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def authenticate(self, der: bytes | None) -> tuple[str | None, list[str]]:
        """kube-apiserver's x509 authenticator: issued by --client-ca-file and signed by it (its
        validity and client-auth purpose were checked by OpenSSL at the handshake); the user is
        the CN, the groups the O values."""
        if not der:
            return None, []
        cert = x509.load_der_x509_certificate(der)
        try:
            cert.verify_directly_issued_by(self.authn_ca.cert)
        except (ValueError, TypeError, Exception):  # noqa: BLE001 - any failure is "not ours"
            return None, []
        cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        orgs = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
        return (str(cns[0].value) if cns else None), orgs

    def __enter__(self) -> ApiServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()
