"""A minimal client of the Kubernetes API through a kubeconfig such as bakery's admin.conf:
the server's certificate verified against the kubeconfig's CA (certificate-authority-data)
with the host name (or IP SAN) checked, client-certificate authentication
(client-certificate-data / client-key-data), one GET returning JSON. Stdlib only.

The client key is written for OpenSSL (ssl.load_cert_chain reads files only) into a private
temporary folder (0700, the file 0600) and removed as soon as it is loaded. Nothing here
prints, logs or puts in a message any certificate or key."""
from __future__ import annotations

import base64
import binascii
import http.client
import json
import os
import shutil
import ssl
import tempfile
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..errors import EnvError, InputError
from ..fsafe import NotRegular, TooLarge, read_regular

RENEW = "`bakery secrets renew CLUSTER.yaml` reissues an expired admin certificate"


class ApiError(EnvError):
    """The API could not be asked or refused: the message says what to check."""


@dataclass(frozen=True)
class Kubeconfig:
    path: str
    server: str
    host: str
    port: int
    ca_pem: str
    cert_pem: bytes
    key_pem: bytes


def _b64(value, path: str, field: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise InputError(f"{path}: {field} is missing; bakery status needs the embedded data of admin.conf",
                         check="kubeconfig")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InputError(f"{path}: {field} is not base64", check="kubeconfig") from None


def _named(doc: dict, kind: str, name) -> dict:
    for entry in doc.get(kind) or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            return entry
    return {}


KUBECONFIG_LIMIT = 1 << 20  # an admin.conf is a few kB; more is not one


def load_kubeconfig(path: str) -> Kubeconfig:
    """The current context's server, CA and client credentials; exit 2 on a file that is not a
    kubeconfig with embedded data."""
    import yaml

    try:
        doc = yaml.safe_load(read_regular(path, KUBECONFIG_LIMIT))
    except (NotRegular, TooLarge) as e:
        raise InputError(f"{e}: not a kubeconfig file", check="kubeconfig") from None
    except FileNotFoundError:
        raise InputError(f"{path}: no such kubeconfig; run `bakery render` first or pass --kubeconfig",
                         check="kubeconfig") from None
    except yaml.YAMLError:
        raise InputError(f"{path}: not a YAML kubeconfig", check="kubeconfig") from None
    if not isinstance(doc, dict) or doc.get("kind") != "Config":
        raise InputError(f"{path}: not a kubeconfig (kind: Config)", check="kubeconfig")
    contexts = [c for c in doc.get("contexts") or [] if isinstance(c, dict)]
    entry = _named(doc, "contexts", doc.get("current-context")) or (contexts[0] if len(contexts) == 1 else {})
    ctx: dict = entry["context"] if isinstance(entry.get("context"), dict) else {}
    cluster = (_named(doc, "clusters", ctx.get("cluster")).get("cluster") or {})
    user = (_named(doc, "users", ctx.get("user")).get("user") or {})
    if not isinstance(cluster, dict) or not isinstance(user, dict) or not cluster or not user:
        raise InputError(f"{path}: its current context names no cluster and user", check="kubeconfig")
    server = cluster.get("server")
    parts = urlsplit(server) if isinstance(server, str) else None
    try:
        port = parts.port if parts else None
    except ValueError:
        port = None
    if (not isinstance(server, str) or not parts or parts.scheme != "https" or not parts.hostname
            or parts.path not in ("", "/")):
        raise InputError(f"{path}: server must be https://HOST[:PORT]", check="kubeconfig")
    ca = _b64(cluster.get("certificate-authority-data"), path, "certificate-authority-data")
    try:
        ca_text = ca.decode("ascii")
    except UnicodeDecodeError:
        raise InputError(f"{path}: certificate-authority-data is not PEM", check="kubeconfig") from None
    return Kubeconfig(path=path, server=server, host=parts.hostname, port=port or 443, ca_pem=ca_text,
                      cert_pem=_b64(user.get("client-certificate-data"), path, "client-certificate-data"),
                      key_pem=_b64(user.get("client-key-data"), path, "client-key-data"))


def tls_context(kc: Kubeconfig) -> ssl.SSLContext:
    """Verify the server against the kubeconfig's CA only (not the system's), its name included;
    present the client certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # no system CAs; hostname check and CERT_REQUIRED on
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    try:
        ctx.load_verify_locations(cadata=kc.ca_pem)
    except (ssl.SSLError, ValueError):
        raise InputError(f"{kc.path}: certificate-authority-data is not a PEM certificate",
                         check="kubeconfig") from None
    folder = tempfile.mkdtemp(prefix="bakery-kubeapi-")  # 0700
    try:
        cert, key = os.path.join(folder, "client.crt"), os.path.join(folder, "client.key")
        for name, data in ((cert, kc.cert_pem), (key, kc.key_pem)):
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        try:
            ctx.load_cert_chain(cert, key)
        except ssl.SSLError:
            raise InputError(f"{kc.path}: client-certificate-data and client-key-data are not a certificate "
                             "and its key", check="kubeconfig") from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return ctx


class Client:
    def __init__(self, kc: Kubeconfig, timeout: float = 10.0):
        self.kc = kc
        self.timeout = timeout
        self.ctx = tls_context(kc)

    def get(self, path: str) -> dict:
        kc = self.kc
        where = f"{kc.server}"
        conn = http.client.HTTPSConnection(kc.host, kc.port, context=self.ctx, timeout=self.timeout)
        try:
            conn.request("GET", path, headers={"Accept": "application/json", "User-Agent": "bakery"})
            resp = conn.getresponse()
            body = resp.read(64 * 1024 * 1024)
        except ssl.SSLCertVerificationError as exc:
            reason = (exc.verify_message or "verification failed").rstrip(".")
            if "mismatch" in reason.lower() or "hostname" in reason.lower():
                hint = (f"the API server's certificate does not name {kc.host}; the endpoint of cluster.yaml must "
                        "be one of its names or IP addresses (kubeadm's certSANs)")
            else:
                hint = (f"the API server's certificate is not signed by the CA in {kc.path}: is admin.conf from "
                        "this cluster's render, and does that address reach this cluster's API server?")
            raise ApiError(f"{where}: TLS verification failed ({reason}); {hint}") from None
        except (ssl.SSLError, ConnectionResetError) as exc:
            # TLS 1.3: the server judges the client certificate after the client's side of the
            # handshake, so its refusal arrives as an alert or a closed connection at the request
            reason = getattr(exc, "reason", None) or ("connection closed" if isinstance(
                exc, (ssl.SSLEOFError, ConnectionResetError)) else type(exc).__name__)
            raise ApiError(f"{where}: the API server ended the TLS handshake ({reason}): it did not accept the "
                           f"client certificate of {kc.path}. Is that admin.conf from this cluster's render (signed "
                           f"by its CA) and not expired? {RENEW}") from None
        except TimeoutError:
            raise ApiError(f"{where}: no answer within {self.timeout:g}s; is the endpoint reachable from here "
                           "and the API server up?") from None
        except (OSError, http.client.HTTPException) as exc:
            what = getattr(exc, "strerror", None) or type(exc).__name__
            raise ApiError(f"{where}: cannot connect ({what}); is the endpoint reachable from here and the API "
                           "server up (on a new cluster, the first control-plane node may still be booting)?"
                           ) from None
        finally:
            conn.close()
        if resp.status == 401:
            raise ApiError(f"{where}: 401 Unauthorized: the API server does not accept the client certificate of "
                           f"{kc.path}; is admin.conf from this cluster's render? An expired certificate: {RENEW}")
        if resp.status == 403:
            raise ApiError(f"{where}: 403 Forbidden: the user of {kc.path} may not list nodes. bakery's admin.conf "
                           "is in group kubeadm:cluster-admins, which kubeadm init binds to cluster-admin near its "
                           "end: on a new cluster, wait for init to finish (--wait asks again)")
        if resp.status != 200:
            raise ApiError(f"{where}: GET {path} answered {resp.status} {resp.reason}")
        try:
            doc = json.loads(body)
        except ValueError:
            raise ApiError(f"{where}: GET {path} answered something that is not JSON") from None
        if not isinstance(doc, dict):
            raise ApiError(f"{where}: GET {path} answered JSON that is not an object")
        return doc
