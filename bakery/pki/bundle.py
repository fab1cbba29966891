"""The secrets bundle: the cluster's root of trust, made once and kept.

One YAML file holds the cluster CA, the etcd CA, the front-proxy CA (certificates and
keys), the service-account key pair, the bootstrap token, the admin client
certificate and, with spec.kubernetes.encryptionAtRest, the key that encrypts Secrets in
etcd. Every render reuses it, so outputs are byte-identical from one render to the next;
nothing here ever rotates a CA. ``--rotate-token`` replaces only the token. A bundle without
an encryption key gets one at the first render that asks for encryption at rest; once made it
is kept (what etcd holds depends on it).

The one exception: a bundle made by an older bakery holds an admin certificate in the
group ``system:masters``. The next render reissues that one leaf (same key, same CA) in
``kubeadm:cluster-admins`` and says so; CAs, keys and token stay as they were.

Keys are generated once per cluster (five), never per node. Key and certificate
encodings follow kubeadm's own files (PKCS#1 "RSA PRIVATE KEY" / SEC1 "EC PRIVATE KEY",
PKIX "PUBLIC KEY" for sa.pub), so the files can be dropped into /etc/kubernetes/pki.

Nothing in this module prints or logs a secret: error messages name the file and the
field, never its content (PyYAML's own messages quote the offending line, so they are not
passed on).
"""
from __future__ import annotations

import base64
import datetime
import functools
import hashlib
import re
import secrets as _random
import string
from dataclasses import dataclass, field, replace
from typing import Any, cast

API_VERSION = "bakery.dev/v1alpha1"
KIND = "SecretsBundle"

# kubeadm's bootstrap token, matched with fullmatch: the whole string (a `$` would let a
# final newline through).
TOKEN_RE = re.compile(r"[a-z0-9]{6}\.[a-z0-9]{16}")
TOKEN_ALPHABET = string.ascii_lowercase + string.digits
TOKEN_USAGES = ("signing", "authentication")
TOKEN_GROUPS = ("system:bootstrappers:kubeadm:default-node-token",)

# Certificates closer than this to their end are refused: a cluster built on them would
# stop working within weeks.
MIN_REMAINING = datetime.timedelta(days=30)
# `bakery secrets check` warns this long ahead.
WARN_REMAINING = datetime.timedelta(days=90)
RFC3339 = "%Y-%m-%dT%H:%M:%SZ"
# What renews a leaf of the bundle, for the messages.
RENEW_HINT = "run `bakery secrets renew CLUSTER.yaml` to reissue it from the cluster CA"
# The encryption-at-rest key: 32 random bytes, base64 (the API server's secretbox provider
# takes exactly 32: k8s.io/apiserver/pkg/apis/apiserver/v1 SecretboxConfiguration, "Each key
# has to be 32 bytes long"; Key.secret is base64).
ENCRYPTION_KEY_BYTES = 32

# kubeadm backdates its certificates a little so that skewed clocks accept them at once.
BACKDATE = datetime.timedelta(minutes=5)

# What kubeadm's ClusterConfiguration.encryptionAlgorithm calls each key algorithm.
KUBEADM_ALGORITHM = {"rsa-2048": "RSA-2048", "rsa-3072": "RSA-3072", "rsa-4096": "RSA-4096",
                     "ecdsa-p256": "ECDSA-P256"}

# (bundle field, common name) of the three CAs, as kubeadm names them.
CAS = (("ca", "kubernetes"), ("etcdCa", "etcd-ca"), ("frontProxyCa", "front-proxy-ca"))
# The everyday admin credential as kubeadm >= 1.29 issues it for admin.conf: CN
# kubernetes-admin in the group kubeadm:cluster-admins, which `kubeadm init` binds to the
# cluster-admin ClusterRole with a ClusterRoleBinding of the same name, near its end
# (kubernetes/kubernetes cmd/kubeadm/app/phases/kubeconfig/kubeconfig.go,
# getKubeConfigSpecsBase and EnsureAdminClusterRoleBindingImpl;
# cmd/kubeadm/app/constants/constants.go, ClusterAdminsGroupAndClusterRoleBinding).
# system:masters (constants.SystemPrivilegedGroup) is kept for super-admin.conf, the
# break-glass credential that kubeadm writes on the init node only. Every Kubernetes
# minor in the versions catalog is 1.29 or later (versions.KubernetesMinor.super_admin_conf).
ADMIN_CN = "kubernetes-admin"
ADMIN_ORG = "kubeadm:cluster-admins"
LEGACY_ADMIN_ORG = "system:masters"  # what bakery before this change put in the bundle


def go_duration(seconds: int) -> str:
    """Seconds as Go's time.Duration.String() writes them: 86400 -> 24h0m0s, 0 -> 0s."""
    if seconds == 0:
        return "0s"
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h{m}m{s}s"
    if m:
        return f"{m}m{s}s"
    return f"{s}s"


@dataclass(frozen=True)
class KeyPair:
    certificate: str = field(repr=False)  # PEM (for the service account: the public key)
    key: str = field(repr=False)  # PEM private key: never in a repr, a traceback or a log


@dataclass(frozen=True)
class Bundle:
    cluster: str
    key_algorithm: str
    token: str = field(repr=False)
    ca: KeyPair
    etcd_ca: KeyPair
    front_proxy_ca: KeyPair
    service_account: KeyPair  # certificate = public key PEM
    admin: KeyPair
    # When bakery made the token (RFC 3339, UTC); None in bundles made before it was recorded.
    # kubeadm counts a token's TTL from when it is registered (by `kubeadm init`, or `kubeadm
    # token create`), never earlier than this.
    token_created: str | None = None
    # The key that encrypts Secrets in etcd (base64 of ENCRYPTION_KEY_BYTES bytes); None until a
    # cluster asks for encryption at rest. Once made it is kept: data in etcd depends on it.
    encryption_key: str | None = field(default=None, repr=False)

    # -- derived values -------------------------------------------------------------
    @functools.cached_property
    def discovery_hash(self) -> str:
        """``sha256:`` + hex SHA-256 of the CA certificate's DER SubjectPublicKeyInfo."""
        from cryptography.hazmat.primitives import serialization

        spki = _cert(self.ca.certificate).public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return "sha256:" + hashlib.sha256(spki).hexdigest()

    def key_digests(self) -> list[str]:
        """key_digest of each private key (for the render's record: these passed parse's
        checks, or bakery made them)."""
        return sorted(key_digest(p.key) for p in (self.ca, self.etcd_ca, self.front_proxy_ca,
                                                   self.service_account, self.admin))

    @functools.cached_property
    def ca_not_before(self) -> str:
        """The cluster CA's start (RFC 3339, UTC): a node whose clock is earlier cannot
        trust any certificate of the cluster."""
        return f"{_cert(self.ca.certificate).not_valid_before_utc:%Y-%m-%dT%H:%M:%SZ}"

    @property
    def token_id(self) -> str:
        return self.token.split(".")[0]

    @property
    def kubeadm_encryption_algorithm(self) -> str:
        return KUBEADM_ALGORITHM[self.key_algorithm]

    def token_expired(self, ttl_seconds: int, now: datetime.datetime) -> bool:
        """Whether the token is past its TTL if it was registered when bakery made it (the
        earliest it can have been): a node joining with it would then be refused. A TTL of
        0 never expires; a bundle that does not say when its token was made cannot tell."""
        if not ttl_seconds or self.token_created is None:
            return False
        made = datetime.datetime.strptime(self.token_created, RFC3339).replace(tzinfo=datetime.UTC)
        return now > made + datetime.timedelta(seconds=ttl_seconds)

    def with_new_token(self, now: datetime.datetime) -> Bundle:
        """The bundle with a fresh token (its id unlike the old one's), made now."""
        return replace(self, token=fresh_token_unlike(self.token), token_created=f"{now:{RFC3339}}")

    def with_encryption_key(self) -> Bundle:
        """This bundle with a new encryption-at-rest key (for a bundle that has none)."""
        assert self.encryption_key is None, "an encryption key is never replaced"
        return replace(self, encryption_key=new_encryption_key())

    def admin_not_after(self) -> datetime.datetime:
        return _cert(self.admin.certificate).not_valid_after_utc

    def b64(self, pem: str) -> str:
        return base64.b64encode(pem.encode()).decode()

    def token_create_command(self, cluster) -> str:
        """The command that registers this token on a running cluster."""
        return (f"kubeadm token create {self.token} --ttl {go_duration(cluster.token_ttl_seconds)} "
                f"--usages {','.join(TOKEN_USAGES)} --groups {','.join(TOKEN_GROUPS)}")

    # -- serialization ----------------------------------------------------------------
    def to_dict(self) -> dict:
        def pair(p: KeyPair, cert_name: str = "certificate") -> dict:
            return {cert_name: p.certificate, "key": p.key}

        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "cluster": self.cluster,
            "keyAlgorithm": self.key_algorithm,
            "bootstrapToken": self.token,
            **({"bootstrapTokenCreated": self.token_created} if self.token_created else {}),
            "discoveryHash": self.discovery_hash,
            "ca": pair(self.ca),
            "etcdCa": pair(self.etcd_ca),
            "frontProxyCa": pair(self.front_proxy_ca),
            "serviceAccount": pair(self.service_account, "publicKey"),
            "admin": pair(self.admin),
            **({"encryptionKey": self.encryption_key} if self.encryption_key else {}),
        }

    def to_bytes(self) -> bytes:
        from ..templating import dump_yaml

        head = ("# bakery secrets bundle: the cluster's root of trust. Keep it private (0600) and keep it:\n"
                "# every render reuses it; losing it means a new cluster.\n")
        return (head + dump_yaml(self.to_dict())).encode()


# -- crypto helpers ---------------------------------------------------------------------

def _cert(pem: str):
    from cryptography import x509

    return x509.load_pem_x509_certificate(pem.encode())


def _new_key(algorithm: str):
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if algorithm == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    bits = int(algorithm.split("-")[1])
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def _key_pem(key) -> str:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption()).decode()


def _pub_pem(public_key) -> str:
    from cryptography.hazmat.primitives import serialization

    return public_key.public_bytes(serialization.Encoding.PEM,
                                   serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def _cert_pem(cert) -> str:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _algorithm_of(public_key) -> str | None:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size in (2048, 3072, 4096):
        return f"rsa-{public_key.key_size}"
    if isinstance(public_key, ec.EllipticCurvePublicKey) and public_key.curve.name == "secp256r1":
        return "ecdsa-p256"
    return None


def _key_usage(*, ca: bool, rsa_key: bool):
    from cryptography import x509

    return x509.KeyUsage(digital_signature=True, key_encipherment=rsa_key, content_commitment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=False,
                         encipher_only=False, decipher_only=False)


def _new_keys(algorithm: str, count: int) -> list:
    """`count` new keys, made side by side: OpenSSL's RSA key generation runs without the
    GIL, so a thread per key uses every core (a bundle's five RSA-2048 keys take about 0.35 s
    one after another)."""
    import threading

    keys: list = [None] * count
    failed: list[BaseException] = []

    def make(i: int) -> None:
        try:
            keys[i] = _new_key(algorithm)
        except BaseException as exc:  # noqa: BLE001 - raised below, in the caller's thread
            failed.append(exc)

    threads = [threading.Thread(target=make, args=(i,), daemon=True) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failed:
        raise failed[0]
    return keys


def _make_ca(common_name: str, algorithm: str, days: int, now: datetime.datetime, key=None) -> KeyPair:
    """A self-signed CA as kubeadm makes one (certutil.NewSelfSignedCACert), with a new key
    unless ``key`` (a private key object) is given."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    key = key or _new_key(algorithm)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (x509.CertificateBuilder()
               .subject_name(name).issuer_name(name)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - BACKDATE)
               .not_valid_after(now + datetime.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .add_extension(_key_usage(ca=True, rsa_key=algorithm.startswith("rsa")), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
               .add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name)]), critical=False))
    cert = builder.sign(key, hashes.SHA256())
    return KeyPair(_cert_pem(cert), _key_pem(key))


def _make_admin(ca: KeyPair, algorithm: str, days: int, now: datetime.datetime, key=None) -> KeyPair:
    """The admin client certificate (CN kubernetes-admin, O kubeadm:cluster-admins), signed
    by the CA; with a new key unless ``key`` (a private key object) is given."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_cert = _cert(ca.certificate)
    # an RSA or ECDSA key: parse() checked the CA's key against keyAlgorithm
    ca_key = cast(CertificateIssuerPrivateKeyTypes,
                  serialization.load_pem_private_key(ca.key.encode(), password=None))
    key = key or _new_key(algorithm)
    not_after = min(now + datetime.timedelta(days=days), ca_cert.not_valid_after_utc)
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, ADMIN_ORG),
                         x509.NameAttribute(NameOID.COMMON_NAME, ADMIN_CN)])
    builder = (x509.CertificateBuilder()
               .subject_name(subject).issuer_name(ca_cert.subject)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - BACKDATE)
               .not_valid_after(not_after)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(_key_usage(ca=False, rsa_key=algorithm.startswith("rsa")), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),
                              critical=False))
    cert = builder.sign(ca_key, hashes.SHA256())
    return KeyPair(_cert_pem(cert), _key_pem(key))


def new_token() -> str:
    pick = lambda n: "".join(_random.choice(TOKEN_ALPHABET) for _ in range(n))  # noqa: E731
    return f"{pick(6)}.{pick(16)}"


def new_encryption_key() -> str:
    return base64.b64encode(_random.token_bytes(ENCRYPTION_KEY_BYTES)).decode()


def new_bundle(cluster, now: datetime.datetime | None = None) -> Bundle:
    """A fresh bundle: three CAs, the service-account key, the admin certificate, a token."""
    now = now or datetime.datetime.now(datetime.UTC)
    alg = cluster.key_algorithm
    *ca_keys, sa_key, admin_key = _new_keys(alg, len(CAS) + 2)
    cas = {field: _make_ca(cn, alg, cluster.ca_validity_days, now, key)
           for (field, cn), key in zip(CAS, ca_keys, strict=True)}
    return Bundle(
        cluster=cluster.name,
        key_algorithm=alg,
        token=new_token(),
        ca=cas["ca"],
        etcd_ca=cas["etcdCa"],
        front_proxy_ca=cas["frontProxyCa"],
        service_account=KeyPair(_pub_pem(sa_key.public_key()), _key_pem(sa_key)),
        admin=_make_admin(cas["ca"], alg, cluster.admin_cert_validity_days, now, admin_key),
        token_created=f"{now:{RFC3339}}",
        encryption_key=new_encryption_key() if cluster.settings.encryption_at_rest else None,
    )


# -- loading and checking ----------------------------------------------------------------

class BadBundle(Exception):
    """One problem with a bundle, in a line that quotes no secret; the caller names the file."""


def _text(doc: dict, key: str, where: str = "") -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not value.strip():
        raise BadBundle(f"{where}{key} is missing or not a string")
    return value


def _pair(doc: dict, key: str, cert_name: str = "certificate") -> KeyPair:
    value = doc.get(key)
    if not isinstance(value, dict):
        raise BadBundle(f"{key} is missing or not a mapping")
    return KeyPair(_text(value, cert_name, f"{key}."), _text(value, "key", f"{key}."))


# What each field holds: one PEM block of the type kubeadm writes for that file, with
# nothing but whitespace around it (keyutil.MarshalPrivateKeyToPEM: PKCS#1 or SEC1 for a
# key; PKIX for sa.pub). A second block would reach the files made from the field (a
# second CA in ca.crt and admin.conf) while every check here reads only the first.
_PEM_KINDS = {"CERTIFICATE": "a certificate", "RSA PRIVATE KEY": "a PKCS#1 RSA private key",
              "EC PRIVATE KEY": "a SEC1 EC private key", "PRIVATE KEY": "a PKCS#8 private key",
              "ENCRYPTED PRIVATE KEY": "an encrypted PKCS#8 private key", "PUBLIC KEY": "a PKIX public key",
              "RSA PUBLIC KEY": "a PKCS#1 RSA public key", "CERTIFICATE REQUEST": "a certificate request"}
_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]{1,40})-----\r?\n((?:[A-Za-z0-9+/=]+\r?\n)+)-----END \1-----")
_PEM_SPACE = " \t\r\n"


def _key_label(algorithm: str) -> str:
    return "EC PRIVATE KEY" if algorithm == "ecdsa-p256" else "RSA PRIVATE KEY"


def _one_pem(text: str, where: str, label: str) -> None:
    """``text`` is one PEM block of type ``label`` and, around it, whitespace only."""
    want = _PEM_KINDS[label]
    blocks = text.count("-----BEGIN ")
    if blocks > 1:
        raise BadBundle(f"{where} holds {blocks} PEM blocks; it must hold exactly one, {want}")
    match = _PEM_BLOCK.search(text)
    if match is None:
        raise BadBundle(f"{where} is not a well-formed PEM block; it must hold {want}")
    if text[:match.start()].strip(_PEM_SPACE) or text[match.end():].strip(_PEM_SPACE):
        raise BadBundle(f"{where} has text around its PEM block; it must hold {want} and nothing else")
    found = match[1]
    if found != label:  # a label is [A-Z0-9 ] only: safe to name, and never key material
        kind = _PEM_KINDS.get(found) or ("a private key of another format" if "PRIVATE" in found
                                          else f"a PEM block labelled {found!r}")
        raise BadBundle(f"{where} holds {kind}; it must hold {want}, as kubeadm writes it")


def key_digest(pem: str) -> str:
    """What names a private key's exact text in a render's record (output.state), never the key."""
    return hashlib.sha256(b"bakery-checked-key\0" + pem.encode()).hexdigest()


def _load_key(pem: str, where: str, checked: frozenset[str] = frozenset()):
    """The private key, fully checked once per read of a bundle: for RSA, OpenSSL's
    consistency check (primes, exponents, CRT values). A key whose CRT values were damaged
    still matches its certificate, and one signature made with it gives its factors away.
    It costs ~35 ms per RSA-2048 key and ~0.3 s per RSA-4096 key (most of it OpenSSL's
    primality tests), five keys per read; keys that bakery has just generated never come
    here (new_bundle does not read its keys back). checked: the key_digest of keys whose
    exact text passed this check before (the output folder's record, kept by this user):
    the same text passes it again, so it is read without repeating it."""
    from cryptography.hazmat.primitives import serialization

    if key_digest(pem) in checked:
        try:
            return serialization.load_pem_private_key(pem.encode(), password=None,
                                                      unsafe_skip_rsa_key_validation=True)
        except (ValueError, TypeError):
            pass  # not what was checked after all: the full read below says why
    try:
        return serialization.load_pem_private_key(pem.encode(), password=None)
    except TypeError:  # a password is needed; no message of cryptography's contains key material
        raise BadBundle(f"{where}.key is encrypted; the bundle holds its keys unencrypted, as kubeadm's "
                        "files do") from None
    except ValueError:
        pass
    try:
        serialization.load_pem_private_key(pem.encode(), password=None, unsafe_skip_rsa_key_validation=True)
    except (ValueError, TypeError):
        raise BadBundle(f"{where}.key is not a valid private key: unreadable, or its private and public "
                        "halves disagree") from None
    raise BadBundle(f"{where}.key fails the RSA key consistency check: its exponent or CRT values are "
                    "corrupt (a damaged or tampered key)")


def _load_cert(pem: str, where: str):
    """The certificate, with the parts read below parsed now (a malformed name or
    extension is a bad bundle, not a traceback)."""
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm

    try:
        cert = _cert(pem)
        _ = (cert.subject, cert.issuer, cert.extensions, cert.public_key())  # parsed here, once
    except (ValueError, UnsupportedAlgorithm, x509.DuplicateExtension) as exc:
        raise BadBundle(f"{where}.certificate is not a PEM certificate that can be read") from exc
    return cert


def _check_algorithm(where: str, public_key, alg: str) -> None:
    found = _algorithm_of(public_key)
    if found != alg:
        raise BadBundle(f"{where} has a {found or 'unsupported'} key, but keyAlgorithm says {alg}")


def _names(name) -> list[tuple[str, str]]:
    """A subject's attributes as (OID, value), sorted: equal for equal sets in any order."""
    return sorted((a.oid.dotted_string, str(a.value)) for a in name)


def _cn_only(cn: str) -> list[tuple[str, str]]:
    from cryptography.x509.oid import NameOID

    return [(NameOID.COMMON_NAME.dotted_string, cn)]


def _may_sign_certificates(cert) -> bool:
    from cryptography import x509

    try:
        return bool(cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign)
    except x509.ExtensionNotFound:
        return False


def _for_client_auth(cert) -> bool:
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    try:
        return ExtendedKeyUsageOID.CLIENT_AUTH in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False


def _check_ca(part: str, cn: str, cert, now: datetime.datetime) -> None:
    """A CA as kubeadm makes it (certutil.NewSelfSignedCACert): named CN=<cn> and nothing
    else, self-signed, BasicConstraints CA:TRUE, KeyUsage keyCertSign, in date."""
    from cryptography.exceptions import InvalidSignature

    subject = _names(cert.subject)
    if subject != _cn_only(cn):
        other = next((f" (it bears {f}'s name, CN={c}: the CAs were swapped or copied)"
                      for f, c in CAS if f != part and subject == _cn_only(c)), "")
        raise BadBundle(f"{part}.certificate's subject is not CN={cn}, as kubeadm names this CA{other}")
    if cert.issuer != cert.subject:
        raise BadBundle(f"{part}.certificate is not self-signed: its issuer is not its subject")
    if not _is_ca(cert):
        raise BadBundle(f"{part}.certificate is not a CA certificate (no BasicConstraints CA:TRUE)")
    if not _may_sign_certificates(cert):
        raise BadBundle(f"{part}.certificate may not sign certificates (no KeyUsage keyCertSign)")
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature):
        raise BadBundle(f"{part}.certificate is not self-signed: its signature does not verify with its "
                        "own key") from None
    _check_validity(cert, f"{part}.certificate ({cn})", now)


def _encryption_key(doc: dict) -> str | None:
    """encryptionKey: absent, or base64 (standard alphabet, padded, nothing else) of exactly
    ENCRYPTION_KEY_BYTES bytes. The message never shows the value."""
    key = doc.get("encryptionKey")
    if key is None:
        return None
    why = f"encryptionKey is not {ENCRYPTION_KEY_BYTES} bytes in base64"
    if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z0-9+/]{43}=", key):
        raise BadBundle(why)
    try:
        raw = base64.b64decode(key, validate=True)
    except ValueError:
        raise BadBundle(why) from None
    if len(raw) != ENCRYPTION_KEY_BYTES or base64.b64encode(raw).decode() != key:
        raise BadBundle(why)
    if len(set(raw)) == 1:
        raise BadBundle("encryptionKey is one byte repeated, not a random key")
    return key


def _check_admin(cert, ca_cert, now: datetime.datetime, ending: bool = True) -> None:
    """A client certificate of the cluster CA for kubernetes-admin in kubeadm:cluster-admins
    (or in system:masters, as older bakery made it; the storage layer reissues that one)."""
    from cryptography.exceptions import InvalidSignature

    if _is_ca(cert):
        raise BadBundle("admin.certificate is a CA certificate (BasicConstraints CA:TRUE); it must be a "
                        "client certificate")
    if _may_sign_certificates(cert):
        raise BadBundle("admin.certificate may sign certificates (KeyUsage keyCertSign); it must be a client "
                        "certificate")
    if not _for_client_auth(cert):
        raise BadBundle("admin.certificate is not for client authentication (no ExtendedKeyUsage clientAuth)")
    if _admin_group(cert) is None:
        raise BadBundle(f"admin.certificate's subject is not O={ADMIN_ORG}, CN={ADMIN_CN} (nor the older "
                        f"O={LEGACY_ADMIN_ORG}, CN={ADMIN_CN}, which a render reissues)")
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise BadBundle("admin.certificate is not signed by the cluster CA (ca)") from exc
    _check_validity(cert, f"admin.certificate ({ADMIN_CN})", now, fix=RENEW_HINT, ending=ending)


def _check_distinct(keys: list[tuple[str, Any]]) -> None:
    """Each CA, the service account and the admin have a key of their own: a CA key that is
    also the admin's would ship in admin.conf; one shared by two CAs lets whoever holds it
    sign for both."""
    from cryptography.hazmat.primitives import serialization

    seen: dict[bytes, str] = {}
    for where, key in keys:
        spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
        if spki in seen:
            raise BadBundle(f"{where}.key is the same key as {seen[spki]}.key; each CA, the service account "
                            "and the admin need a key of their own")
        seen[spki] = where


def _same_key(cert_or_pub, key) -> bool:
    from cryptography.hazmat.primitives import serialization

    enc, fmt = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    pub = cert_or_pub.public_key() if hasattr(cert_or_pub, "public_key") else cert_or_pub
    return pub.public_bytes(enc, fmt) == key.public_key().public_bytes(enc, fmt)


class LeafEnding(BadBundle):
    """A leaf credential (the admin certificate) ends within MIN_REMAINING or has ended: the
    bundle is sound, and `bakery secrets renew` reissues the leaf."""


def _check_validity(cert, where: str, now: datetime.datetime, *, fix: str = "", ending: bool = True) -> None:
    """Valid now (with a day's grace for skewed clocks) and, unless ``ending`` is False, for
    MIN_REMAINING more; ``fix`` says what to do about an end."""
    end = cert.not_valid_after_utc
    if cert.not_valid_before_utc > now + datetime.timedelta(days=1):
        raise BadBundle(f"{where} is not valid before {cert.not_valid_before_utc:%Y-%m-%d} (check the clock)")
    if not ending:
        return
    error = LeafEnding if fix == RENEW_HINT else BadBundle
    fix = f"; {fix}" if fix else ""
    if end <= now:
        raise error(f"{where} expired on {end:%Y-%m-%d}{fix}")
    if end - now < MIN_REMAINING:
        raise error(f"{where} expires on {end:%Y-%m-%d}, in less than {MIN_REMAINING.days} days{fix}")


def parse(data: bytes, now: datetime.datetime | None = None, *, leaf_ending: bool = True,
          checked: frozenset[str] = frozenset()) -> Bundle:
    """Parse and check a bundle. Raises BadBundle with a one-line reason that quotes no secret.
    leaf_ending=False accepts a leaf (the admin certificate) that has ended or ends soon: for
    `bakery secrets renew`, which replaces it."""
    import yaml

    now = now or datetime.datetime.now(datetime.UTC)
    try:
        doc = yaml.safe_load(data)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise BadBundle(f"it is not valid YAML{where}") from None
    except UnicodeDecodeError:
        raise BadBundle("it is not UTF-8 text") from None
    except RecursionError:  # a bundle is three levels deep; PyYAML's Python loader recurses
        raise BadBundle("it nests far deeper than a bundle does") from None
    if not isinstance(doc, dict) or doc.get("kind") != KIND:
        raise BadBundle(f"it is not a bakery secrets bundle (no 'kind: {KIND}')")
    if doc.get("apiVersion") != API_VERSION:
        raise BadBundle(f"apiVersion {doc.get('apiVersion')!r} is not {API_VERSION!r}")
    cluster = _text(doc, "cluster")
    alg = _text(doc, "keyAlgorithm")
    if alg not in KUBEADM_ALGORITHM:
        raise BadBundle(f"keyAlgorithm {alg!r} is not one of {', '.join(KUBEADM_ALGORITHM)}")
    token = doc.get("bootstrapToken")
    if not isinstance(token, str) or not TOKEN_RE.fullmatch(token):
        raise BadBundle("bootstrapToken is not of the form [a-z0-9]{6}.[a-z0-9]{16}")  # the value is not shown
    created = doc.get("bootstrapTokenCreated")
    if isinstance(created, datetime.datetime) and created.utcoffset() in (None, datetime.timedelta(0)):
        created = f"{created:{RFC3339}}"  # written unquoted, YAML reads a timestamp: the same instant
    if created is not None:
        try:
            datetime.datetime.strptime(created if isinstance(created, str) else "", RFC3339)
        except ValueError:
            raise BadBundle("bootstrapTokenCreated is not a UTC time like 2026-01-31T12:00:00Z") from None
    bundle = Bundle(cluster=cluster, key_algorithm=alg, token=token, ca=_pair(doc, "ca"),
                    etcd_ca=_pair(doc, "etcdCa"), front_proxy_ca=_pair(doc, "frontProxyCa"),
                    service_account=_pair(doc, "serviceAccount", "publicKey"), admin=_pair(doc, "admin"),
                    token_created=created, encryption_key=_encryption_key(doc))

    pairs = {"ca": bundle.ca, "etcdCa": bundle.etcd_ca, "frontProxyCa": bundle.front_proxy_ca,
             "serviceAccount": bundle.service_account, "admin": bundle.admin}
    for part, pair in pairs.items():
        if part == "serviceAccount":
            _one_pem(pair.certificate, "serviceAccount.publicKey", "PUBLIC KEY")
        else:
            _one_pem(pair.certificate, f"{part}.certificate", "CERTIFICATE")
        _one_pem(pair.key, f"{part}.key", _key_label(alg))

    keys = []
    for part, cn in CAS:
        cert, key = _load_cert(pairs[part].certificate, part), _load_key(pairs[part].key, part, checked)
        if not _same_key(cert, key):
            raise BadBundle(f"{part}.key does not belong to {part}.certificate")
        _check_algorithm(part, cert.public_key(), alg)
        _check_ca(part, cn, cert, now)
        keys.append((part, key))

    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    try:
        sa_pub = serialization.load_pem_public_key(bundle.service_account.certificate.encode())
    except (ValueError, UnsupportedAlgorithm):
        raise BadBundle("serviceAccount.publicKey is not a PEM public key") from None
    sa_key = _load_key(bundle.service_account.key, "serviceAccount", checked)
    if not _same_key(sa_pub, sa_key):
        raise BadBundle("serviceAccount.key does not belong to serviceAccount.publicKey")
    _check_algorithm("serviceAccount", sa_pub, alg)
    keys.append(("serviceAccount", sa_key))

    admin_cert, admin_key = _load_cert(bundle.admin.certificate, "admin"), _load_key(bundle.admin.key, "admin", checked)
    if not _same_key(admin_cert, admin_key):
        raise BadBundle("admin.key does not belong to admin.certificate")
    _check_algorithm("admin", admin_cert.public_key(), alg)
    _check_admin(admin_cert, _cert(bundle.ca.certificate), now, ending=leaf_ending)
    keys.append(("admin", admin_key))
    _check_distinct(keys)

    stated = doc.get("discoveryHash")
    if stated is not None and stated != bundle.discovery_hash:
        raise BadBundle("discoveryHash does not match ca.certificate (was the CA replaced by hand?)")
    return bundle


def expiry_report(data: bytes, now: datetime.datetime | None = None) -> list[tuple[str, str, str, int]]:
    """(field, subject CN, not-after date, days left) of every certificate in a bundle that
    parses as YAML, whether or not it passes the checks of parse()."""
    import yaml
    from cryptography import x509

    now = now or datetime.datetime.now(datetime.UTC)
    doc = yaml.safe_load(data)
    rows = []
    for name in ("ca", "etcdCa", "frontProxyCa", "admin"):
        pem = (doc.get(name) or {}).get("certificate") if isinstance(doc, dict) else None
        if not isinstance(pem, str):
            continue
        try:
            cert = _cert(pem)
        except ValueError:
            continue
        end = cert.not_valid_after_utc
        cn = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        rows.append((name, cn[0].value if cn else "", f"{end:%Y-%m-%d}", (end - now).days))
    return rows


def _admin_group(cert) -> str | None:
    """ADMIN_ORG or LEGACY_ADMIN_ORG when the certificate's subject is exactly that group and
    CN kubernetes-admin (in either order); None for any other identity."""
    from cryptography.x509.oid import NameOID

    attrs = _names(cert.subject)
    for org in (ADMIN_ORG, LEGACY_ADMIN_ORG):
        if attrs == sorted([(NameOID.ORGANIZATION_NAME.dotted_string, org),
                            (NameOID.COMMON_NAME.dotted_string, ADMIN_CN)]):
            return org
    return None


def _admin_subject_ok(bundle: Bundle) -> bool:
    """Whether the admin certificate is exactly O=kubeadm:cluster-admins, CN=kubernetes-admin."""
    return _admin_group(_cert(bundle.admin.certificate)) == ADMIN_ORG


def reissue_admin_note(bundle: Bundle) -> str | None:
    """What an older bundle's admin certificate needs, in one line; None if nothing."""
    if _admin_subject_ok(bundle):
        return None
    from cryptography import x509

    cert = _cert(bundle.admin.certificate)
    groups = [a.value for a in cert.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATION_NAME)]
    return (f"the admin certificate is in {', '.join(groups) or 'no group'}, not {ADMIN_ORG}; a render reissues it "
            f"(same key, same CA; CAs, keys and token unchanged). Copies of the old admin.conf keep their "
            f"{', '.join(groups) or 'old'} rights until {cert.not_valid_after_utc:%Y-%m-%d}: delete them")


def renew_leaves(bundle: Bundle, cluster, now: datetime.datetime | None = None) -> Bundle:
    """The bundle with every leaf credential reissued from its CA: the admin client
    certificate, with a new key, valid for spec.secrets.adminCertValidityDays from now (never
    beyond the CA's own end). CAs, the service-account key and the token stay."""
    now = now or datetime.datetime.now(datetime.UTC)
    return replace(bundle, admin=_make_admin(bundle.ca, bundle.key_algorithm, cluster.admin_cert_validity_days, now))


def reissue_admin(bundle: Bundle, cluster, now: datetime.datetime | None = None) -> Bundle:
    """The bundle with its admin certificate reissued in kubeadm:cluster-admins: same key,
    same CA, a new validity period; nothing else changes."""
    now = now or datetime.datetime.now(datetime.UTC)
    key = _load_key(bundle.admin.key, "admin")
    cert = _make_admin(bundle.ca, bundle.key_algorithm, cluster.admin_cert_validity_days, now, key=key)
    return replace(bundle, admin=KeyPair(cert.certificate, bundle.admin.key))


def _is_ca(cert) -> bool:
    from cryptography import x509

    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def fresh_token_unlike(old: str) -> str:
    """A new token whose id differs from the old one's."""
    while True:
        token = new_token()
        if token.split(".")[0] != old.split(".")[0]:
            return token


__all__ = ["Bundle", "KeyPair", "BadBundle", "LeafEnding", "new_bundle", "parse", "go_duration", "reissue_admin_note",
           "reissue_admin", "renew_leaves", "fresh_token_unlike"]
