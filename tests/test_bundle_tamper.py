"""Tampered secrets bundles (issue 16, item 8): each one is refused when the bundle is read.

Every case starts from a good bundle that bakery made and changes one thing, as anyone who
can write the bundle could: by editing its YAML, or with the `cryptography` library (a CA
re-signed, a key swapped, an RSA key whose CRT values are corrupt). parse() must refuse it
with BadBundle: one line that names the field and quotes no key material and no token.

The corrupt keys are confirmed broken by OpenSSL itself (`openssl rsa -check` says "RSA key
not ok") while their public half still matches the certificate, so only a full key check
can find them; a signature made with such a key leaks the key's factors.

`test_tampered_bundle_is_refused` runs once per tampered bundle: its count is the number of
tampered bundles tried. The command-line case (exit 2, one line, nothing written) is in
tests/test_secrets.py's BAD table ("ca-second-certificate").
"""
from __future__ import annotations

import base64
import datetime
import hashlib
import re
import subprocess
from collections.abc import Callable
from dataclasses import replace

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bakery.pki import bundle as secrets
from bakery.spec.pipeline import load_cluster

from conftest import LAB, need

NOW = datetime.datetime.now(datetime.UTC)
DAY = datetime.timedelta(days=1)
PAIRS = {"ca": "certificate", "etcdCa": "certificate", "frontProxyCa": "certificate",
         "serviceAccount": "publicKey", "admin": "certificate"}
CA_CN = {"ca": "kubernetes", "etcdCa": "etcd-ca", "frontProxyCa": "front-proxy-ca"}
PEM_FIELDS = [(part, sub) for part, cert in PAIRS.items() for sub in (cert, "key")]


# -- the good bundles and the tools to spoil them --------------------------------------

@pytest.fixture(scope="module")
def good() -> dict:
    """A good rsa-2048 bundle (lab) and a good ecdsa-p256 one, each as bakery wrote it."""
    cluster, _ = load_cluster(str(LAB))
    return {"rsa": secrets.new_bundle(cluster),
            "ec": secrets.new_bundle(replace(cluster, key_algorithm="ecdsa-p256"))}


def dump(doc: dict) -> bytes:
    return yaml.safe_dump(doc, sort_keys=False).encode()


def private_key(pem: str):
    return serialization.load_pem_private_key(pem.encode(), password=None)


def key_pem(key, fmt=serialization.PrivateFormat.TraditionalOpenSSL) -> str:
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()).decode()


def public_pem(key) -> str:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def load_cert(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def name(cn: str, *orgs: str, ou: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    if ou:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou))
    return x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def cert(subject: x509.Name, key, *, signer=None, issuer: x509.Name | None = None, basic: bool | None,
         cert_sign: bool | None, eku=None, start=NOW - DAY, end=NOW + 3650 * DAY) -> str:
    """A certificate for ``key``'s public half, self-signed unless signer and issuer are given;
    BasicConstraints CA:basic and KeyUsage keyCertSign:cert_sign, each left out when None."""
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer or subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(start).not_valid_after(end))
    if basic is not None:
        builder = builder.add_extension(x509.BasicConstraints(ca=basic, path_length=None), critical=True)
    if cert_sign is not None:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_encipherment=False, content_commitment=False, data_encipherment=False,
            key_agreement=False, key_cert_sign=cert_sign, crl_sign=False, encipher_only=False,
            decipher_only=False), critical=True)
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    signed = builder.sign(signer or key, hashes.SHA256())
    return signed.public_bytes(serialization.Encoding.PEM).decode()


def ca_cert(cn_or_name, key, **kw) -> str:
    subject = cn_or_name if isinstance(cn_or_name, x509.Name) else name(cn_or_name)
    kw.setdefault("basic", True)
    kw.setdefault("cert_sign", True)
    return cert(subject, key, **kw)


def admin_cert(doc: dict, *, subject: x509.Name | None = None, key=None, ca: str = "ca", **kw) -> str:
    """An admin certificate signed by the bundle's CA ``ca`` (as bakery makes one unless told
    otherwise), for the bundle's admin key unless ``key`` is given."""
    kw.setdefault("basic", False)
    kw.setdefault("cert_sign", False)
    kw.setdefault("eku", [ExtendedKeyUsageOID.CLIENT_AUTH])
    kw.setdefault("end", NOW + 365 * DAY)
    return cert(subject or name("kubernetes-admin", "kubeadm:cluster-admins"),
                key or private_key(doc["admin"]["key"]), signer=private_key(doc[ca]["key"]),
                issuer=load_cert(doc[ca]["certificate"]).subject, **kw)


def with_ca(doc: dict, part: str, certificate: str, key: str) -> dict:
    """The bundle with CA ``part`` replaced; for the cluster CA, the admin certificate
    re-signed by the new one and the discovery hash recomputed, so that only the change
    under test is wrong."""
    doc[part] = {"certificate": certificate, "key": key}
    if part == "ca":
        doc["admin"]["certificate"] = admin_cert(doc)
        spki = load_cert(certificate).public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        doc["discoveryHash"] = "sha256:" + hashlib.sha256(spki).hexdigest()
    return doc


def corrupt(pem: str, value: str) -> str:
    """The RSA key with one CRT value (or d) changed: the public half, and so the match with
    its certificate, stays; OpenSSL's key check says "RSA key not ok"."""
    n = private_key(pem).private_numbers()
    values = {v: getattr(n, v) for v in ("p", "q", "d", "dmp1", "dmq1", "iqmp")}
    values[value] ^= 2
    bad = rsa.RSAPrivateNumbers(**values, public_numbers=n.public_numbers).private_key(
        unsafe_skip_rsa_key_validation=True)
    return key_pem(bad)


def relabel(pem: str, label: str) -> str:
    return re.sub(r"-----(BEGIN|END) [A-Z0-9 ]+-----", lambda m: f"-----{m[1]} {label}-----", pem)


def pkcs1_public(pem: str) -> str:
    pub = serialization.load_pem_public_key(pem.encode())
    return pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1).decode()


def pkcs8(pem: str) -> str:
    return key_pem(private_key(pem), serialization.PrivateFormat.PKCS8)


def new_rsa(bits: int = 2048):
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def new_ec():
    return ec.generate_private_key(ec.SECP256R1())


def ec_wrong_scalar(pem: str) -> str:
    """The EC key's public point with another key's private scalar (SEC1, as kubeadm writes)."""
    key, other = private_key(pem), new_ec()
    point = lambda k: k.public_key().public_bytes(serialization.Encoding.X962,  # noqa: E731
                                                  serialization.PublicFormat.UncompressedPoint)
    der = other.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL,
                              serialization.NoEncryption())
    assert der.count(point(other)) == 1
    body = base64.encodebytes(der.replace(point(other), point(key))).decode()
    label = "EC " + "PRIVATE KEY"  # (split: no key-shaped literal in git)
    return f"-----BEGIN {label}-----\n{body}-----END {label}-----\n"


# -- the cases --------------------------------------------------------------------------
# name -> (bundle: "rsa" or "ec", edit of the bundle's dict, field named, reason in the message)

Edit = Callable[[dict], object]
CASES: dict[str, tuple[str, Edit, str, str]] = {}


def case(name: str, field: str, reason: str, bundle: str = "rsa"):
    def register(edit: Edit) -> Edit:
        assert name not in CASES, name
        CASES[name] = (bundle, edit, field, reason)
        return edit
    return register


def other_cert_for(part: str) -> str:
    return {"ca": "etcdCa", "etcdCa": "frontProxyCa", "frontProxyCa": "ca", "admin": "etcdCa"}[part]


for _part, _sub in PEM_FIELDS:
    _field = f"{_part}.{_sub}"

    # missing, or not a string
    case(f"{_field}-missing", _field, "is missing or not a string")(
        lambda d, p=_part, s=_sub: d[p].pop(s))
    case(f"{_field}-a-list", _field, "is missing or not a string")(
        lambda d, p=_part, s=_sub: d[p].__setitem__(s, d[p][s].splitlines()))
    # a second PEM block after the first: another CA's certificate, another key, the same key again
    if _sub == "certificate":
        _second = lambda d, p=_part: d[other_cert_for(p)]["certificate"]  # noqa: E731
    elif _sub == "publicKey":
        _second = lambda d: public_pem(new_rsa())  # noqa: E731
    else:
        _second = lambda d, p=_part: d[p]["key"]  # noqa: E731
    case(f"{_field}-two-blocks", _field, "holds 2 PEM blocks")(
        lambda d, p=_part, s=_sub, second=_second: d[p].__setitem__(s, d[p][s] + second(d)))
    # text before or after the block
    case(f"{_field}-text-before", _field, "text around its PEM block")(
        lambda d, p=_part, s=_sub: d[p].__setitem__(s, "Bag Attributes\n    friendlyName: x\n" + d[p][s]))
    case(f"{_field}-text-after", _field, "text around its PEM block")(
        lambda d, p=_part, s=_sub: d[p].__setitem__(s, d[p][s] + "# rotated by hand\n"))

# a block of another type: what openssl or another tool writes, but kubeadm does not
for _part in ("ca", "etcdCa", "frontProxyCa", "admin"):
    # cryptography reads a certificate labelled "X509 CERTIFICATE"; kubeadm skips the block
    case(f"{_part}.certificate-x509-label", f"{_part}.certificate", "labelled 'X509 CERTIFICATE'")(
        lambda d, p=_part: d[p].__setitem__("certificate", relabel(d[p]["certificate"], "X509 CERTIFICATE")))
for _part in ("ca", "etcdCa", "frontProxyCa", "serviceAccount", "admin"):
    case(f"{_part}.key-pkcs8", f"{_part}.key", "holds a PKCS#8 private key")(
        lambda d, p=_part: d[p].__setitem__("key", pkcs8(d[p]["key"])))
case("serviceAccount.publicKey-pkcs1", "serviceAccount.publicKey", "holds a PKCS#1 RSA public key")(
    lambda d: d["serviceAccount"].__setitem__("publicKey", pkcs1_public(d["serviceAccount"]["publicKey"])))
case("serviceAccount.publicKey-a-certificate", "serviceAccount.publicKey", "holds a certificate")(
    lambda d: d["serviceAccount"].__setitem__("publicKey", d["admin"]["certificate"]))
case("ca.key-a-certificate", "ca.key", "holds a certificate")(
    lambda d: d["ca"].__setitem__("key", d["ca"]["certificate"]))
case("admin.certificate-a-key", "admin.certificate", "holds a PKCS#1 RSA private key")(
    lambda d: d["admin"].__setitem__("certificate", d["admin"]["key"]))
case("etcdCa.key-ec-label-on-rsa", "etcdCa.key", "holds a SEC1 EC private key")(
    lambda d: d["etcdCa"].__setitem__("key", relabel(d["etcdCa"]["key"], "EC PRIVATE KEY")))

# a key of another field
case("ca.key-of-etcdCa", "ca.key", "does not belong to ca.certificate")(
    lambda d: d["ca"].__setitem__("key", d["etcdCa"]["key"]))
case("admin.key-of-serviceAccount", "admin.key", "does not belong to admin.certificate")(
    lambda d: d["admin"].__setitem__("key", d["serviceAccount"]["key"]))
case("serviceAccount-is-etcdCa-key", "serviceAccount.key", "same key as etcdCa.key")(
    lambda d: d.__setitem__("serviceAccount", {"publicKey": public_pem(private_key(d["etcdCa"]["key"])),
                                               "key": d["etcdCa"]["key"]}))
case("etcdCa-made-with-ca-key", "etcdCa.key", "same key as ca.key")(
    lambda d: with_ca(d, "etcdCa", ca_cert("etcd-ca", private_key(d["ca"]["key"])), d["ca"]["key"]))
case("frontProxyCa-made-with-etcdCa-key", "frontProxyCa.key", "same key as etcdCa.key")(
    lambda d: with_ca(d, "frontProxyCa", ca_cert("front-proxy-ca", private_key(d["etcdCa"]["key"])),
                      d["etcdCa"]["key"]))
case("admin-holds-the-ca-key", "admin.key", "same key as ca.key")(
    lambda d: d.__setitem__("admin", {"certificate": admin_cert(d, key=private_key(d["ca"]["key"])),
                                      "key": d["ca"]["key"]}))
# a certificate of another field
case("ca.certificate-of-etcdCa", "ca.key", "does not belong to ca.certificate")(
    lambda d: d["ca"].__setitem__("certificate", d["etcdCa"]["certificate"]))
case("frontProxyCa-is-etcdCa", "frontProxyCa.certificate", "subject is not CN=front-proxy-ca")(
    lambda d: d.__setitem__("frontProxyCa", dict(d["etcdCa"])))
case("admin-is-the-ca", "admin.certificate", "is a CA certificate")(
    lambda d: d.__setitem__("admin", dict(d["ca"])))
case("ca-is-the-admin", "ca.certificate", "subject is not CN=kubernetes")(
    lambda d: with_ca(d, "ca", d["admin"]["certificate"], d["admin"]["key"]))

# swapped CAs, each pair (certificate and key moved together)
for _a, _b in (("ca", "etcdCa"), ("ca", "frontProxyCa"), ("etcdCa", "frontProxyCa")):
    def _swap(d, a=_a, b=_b):
        pa, pb = dict(d[a]), dict(d[b])
        with_ca(d, b, pa["certificate"], pa["key"])
        with_ca(d, a, pb["certificate"], pb["key"])  # a is "ca" in two pairs: the admin re-signed by it
    case(f"swapped-{_a}-{_b}", f"{_a}.certificate", f"subject is not CN={CA_CN[_a]}")(_swap)
case("swapped-certificates-only-etcdCa-frontProxyCa", "etcdCa.key", "does not belong to etcdCa.certificate")(
    lambda d: d["etcdCa"].__setitem__("certificate", d["frontProxyCa"]["certificate"]))

# a CA's subject and role
case("ca-extra-organization", "ca.certificate", "subject is not CN=kubernetes")(
    lambda d: with_ca(d, "ca", ca_cert(name("kubernetes", "system:masters"), k := new_rsa()), key_pem(k)))
case("etcdCa-other-name", "etcdCa.certificate", "subject is not CN=etcd-ca")(
    lambda d: with_ca(d, "etcdCa", ca_cert("etcd", k := new_rsa()), key_pem(k)))
for _part, _cn in CA_CN.items():
    case(f"{_part}-no-basic-constraints", f"{_part}.certificate", "not a CA certificate")(
        lambda d, p=_part, cn=_cn: with_ca(d, p, ca_cert(cn, k := new_rsa(), basic=None), key_pem(k)))
    case(f"{_part}-no-keycertsign", f"{_part}.certificate", "keyCertSign")(
        lambda d, p=_part, cn=_cn: with_ca(d, p, ca_cert(cn, k := new_rsa(), cert_sign=False), key_pem(k)))
case("frontProxyCa-basic-constraints-false", "frontProxyCa.certificate", "not a CA certificate")(
    lambda d: with_ca(d, "frontProxyCa", ca_cert("front-proxy-ca", k := new_rsa(), basic=False), key_pem(k)))
case("ca-no-key-usage", "ca.certificate", "keyCertSign")(
    lambda d: with_ca(d, "ca", ca_cert("kubernetes", k := new_rsa(), cert_sign=None), key_pem(k)))
# not self-signed: issued by the cluster CA; or naming itself but signed by another key
case("etcdCa-issued-by-ca", "etcdCa.certificate", "not self-signed")(
    lambda d: with_ca(d, "etcdCa", ca_cert("etcd-ca", k := new_rsa(), signer=private_key(d["ca"]["key"]),
                                           issuer=name("kubernetes")), key_pem(k)))
case("frontProxyCa-signed-by-another-key", "frontProxyCa.certificate", "not self-signed")(
    lambda d: with_ca(d, "frontProxyCa", ca_cert("front-proxy-ca", k := new_rsa(), signer=new_rsa()), key_pem(k)))
case("ca-signed-by-another-key", "ca.certificate", "not self-signed")(
    lambda d: with_ca(d, "ca", ca_cert("kubernetes", k := new_rsa(), signer=new_rsa()), key_pem(k)))
# out of date
case("ca-expired", "ca.certificate", "expired on")(
    lambda d: with_ca(d, "ca", ca_cert("kubernetes", k := new_rsa(), start=NOW - 400 * DAY, end=NOW - DAY),
                      key_pem(k)))
case("etcdCa-not-yet-valid", "etcdCa.certificate", "not valid before")(
    lambda d: with_ca(d, "etcdCa", ca_cert("etcd-ca", k := new_rsa(), start=NOW + 30 * DAY), key_pem(k)))
case("frontProxyCa-expires-in-a-week", "frontProxyCa.certificate", "in less than 30 days")(
    lambda d: with_ca(d, "frontProxyCa", ca_cert("front-proxy-ca", k := new_rsa(), end=NOW + 7 * DAY), key_pem(k)))
case("admin-expired", "admin.certificate", "expired on")(
    lambda d: d["admin"].__setitem__("certificate", admin_cert(d, start=NOW - 400 * DAY, end=NOW - DAY)))
case("admin-not-yet-valid", "admin.certificate", "not valid before")(
    lambda d: d["admin"].__setitem__("certificate", admin_cert(d, start=NOW + 30 * DAY)))

# the admin certificate: a client of the cluster CA, as kubernetes-admin in kubeadm:cluster-admins
case("admin-as-a-ca", "admin.certificate", "is a CA certificate")(
    lambda d: d["admin"].__setitem__("certificate", admin_cert(d, basic=True, cert_sign=True)))
case("admin-may-sign-certificates", "admin.certificate", "keyCertSign")(
    lambda d: d["admin"].__setitem__("certificate", admin_cert(d, cert_sign=True)))
case("admin-without-extended-key-usage", "admin.certificate", "clientAuth")(
    lambda d: d["admin"].__setitem__("certificate", admin_cert(d, eku=None)))
case("admin-server-auth-only", "admin.certificate", "clientAuth")(
    lambda d: d["admin"].__setitem__("certificate", admin_cert(d, eku=[ExtendedKeyUsageOID.SERVER_AUTH])))
for _label, _subject in {
        "other-cn": name("system:admin", "kubeadm:cluster-admins"),
        "node-identity": name("system:node:k8s-node1", "system:nodes"),
        "other-o": name("kubernetes-admin", "system:nodes"),
        "extra-o": name("kubernetes-admin", "kubeadm:cluster-admins", "system:masters"),
        "no-o": name("kubernetes-admin"),
        "extra-ou": name("kubernetes-admin", "kubeadm:cluster-admins", ou="ops"),
        "legacy-extra-o": name("kubernetes-admin", "system:masters", "system:nodes")}.items():
    case(f"admin-{_label}", "admin.certificate", "O=kubeadm:cluster-admins, CN=kubernetes-admin")(
        lambda d, s=_subject: d["admin"].__setitem__("certificate", admin_cert(d, subject=s)))
case("admin-signed-by-etcdCa", "admin.certificate", "not signed by the cluster CA")(
    lambda d: d["admin"].__setitem__("certificate", admin_cert(d, ca="etcdCa")))

# keys of another algorithm or size than the bundle's
case("serviceAccount-ecdsa-in-rsa-bundle", "serviceAccount.key", "holds a SEC1 EC private key")(
    lambda d: d.__setitem__("serviceAccount", {"publicKey": public_pem(k := new_ec()), "key": key_pem(k)}))
case("admin-ecdsa-in-rsa-bundle", "admin.key", "holds a SEC1 EC private key")(
    lambda d: d.__setitem__("admin", {"certificate": admin_cert(d, key=(k := new_ec())), "key": key_pem(k)}))
case("serviceAccount-rsa-3072-in-rsa-2048-bundle", "serviceAccount", "rsa-3072 key, but keyAlgorithm says rsa-2048")(
    lambda d: d.__setitem__("serviceAccount", {"publicKey": public_pem(k := new_rsa(3072)), "key": key_pem(k)}))
case("admin-rsa-3072-in-rsa-2048-bundle", "admin", "rsa-3072 key, but keyAlgorithm says rsa-2048")(
    lambda d: d.__setitem__("admin", {"certificate": admin_cert(d, key=(k := new_rsa(3072))), "key": key_pem(k)}))
case("etcdCa-rsa-3072-in-rsa-2048-bundle", "etcdCa", "rsa-3072 key, but keyAlgorithm says rsa-2048")(
    lambda d: with_ca(d, "etcdCa", ca_cert("etcd-ca", k := new_rsa(3072)), key_pem(k)))

# keys whose public half matches but whose private values are corrupt
CORRUPT = {f"{p}.key-corrupt-{v}": (p, v) for p, v in (
    ("ca", "dmp1"), ("ca", "iqmp"), ("etcdCa", "dmq1"), ("frontProxyCa", "dmp1"),
    ("serviceAccount", "iqmp"), ("admin", "dmp1"), ("admin", "d"))}
for _name, (_part, _value) in CORRUPT.items():
    case(_name, f"{_part}.key", "consistency check")(
        lambda d, p=_part, v=_value: d[p].__setitem__("key", corrupt(d[p]["key"], v)))
case("ecdsa-etcdCa.key-wrong-scalar", "etcdCa.key", "halves disagree", bundle="ec")(
    lambda d: d["etcdCa"].__setitem__("key", ec_wrong_scalar(d["etcdCa"]["key"])))
case("ecdsa-ca.key-pkcs8", "ca.key", "holds a PKCS#8 private key", bundle="ec")(
    lambda d: d["ca"].__setitem__("key", pkcs8(d["ca"]["key"])))
case("ecdsa-ca.certificate-two-blocks", "ca.certificate", "holds 2 PEM blocks", bundle="ec")(
    lambda d: d["ca"].__setitem__("certificate", d["ca"]["certificate"] + d["frontProxyCa"]["certificate"]))

# the token, as kubeadm's bootstrap token regexp reads it: [a-z0-9]{6}.[a-z0-9]{16} and nothing else
for _label, _make in {
        "trailing-newline": lambda t: t + "\n", "trailing-crlf": lambda t: t + "\r\n", "trailing-cr": lambda t: t + "\r",
        "leading-newline": lambda t: "\n" + t, "trailing-space": lambda t: t + " ", "leading-space": lambda t: " " + t,
        "inner-space": lambda t: t.replace(".", ". "), "tab": lambda t: t + "\t", "nul": lambda t: t + "\0",
        "uppercase": lambda t: t.upper(), "id-5": lambda t: t[1:], "id-7": lambda t: "a" + t,
        "secret-15": lambda t: t[:-1], "secret-17": lambda t: t + "a", "no-dot": lambda t: t.replace(".", ""),
        "dash": lambda t: t.replace(".", "-"), "two-tokens": lambda t: t + "," + t,
        "non-ascii-digit": lambda t: t[:-1] + "\u0663", "a-number": lambda t: 123456}.items():
    case(f"bootstrapToken-{_label}", "bootstrapToken", "is not of the form")(
        lambda d, make=_make: d.__setitem__("bootstrapToken", make(d["bootstrapToken"])))


# -- the checks -----------------------------------------------------------------------------

def tampered(good: dict, name: str) -> tuple[bytes, dict]:
    bundle, edit, _, _ = CASES[name]
    doc = good[bundle].to_dict()
    edit(doc)
    return dump(doc), doc


def secret_pieces(*docs: dict) -> set[str]:
    """Pieces of every key, certificate and token in these bundles: none may be in a message."""
    pieces = set()
    for doc in docs:
        token = doc.get("bootstrapToken")
        if isinstance(token, str):
            pieces |= {token.strip(), *token.strip().split(".")}
        for part, sub in PEM_FIELDS:
            value = (doc.get(part) or {}).get(sub)
            if isinstance(value, str):
                pieces |= {ln for ln in value.splitlines() if len(ln) >= 16 and "-----" not in ln}
    return {p for p in pieces if len(p) >= 6}


@pytest.mark.parametrize("name", sorted(CASES))
def test_tampered_bundle_is_refused(good, name):
    data, doc = tampered(good, name)
    _, _, field, reason = CASES[name]
    with pytest.raises(secrets.BadBundle) as refused:
        secrets.parse(data)
    message = str(refused.value)
    assert "\n" not in message and "\r" not in message, message
    assert field in message and reason in message, (name, message)
    for secret in secret_pieces(doc, good["rsa"].to_dict(), good["ec"].to_dict()):
        assert secret not in message, name
    assert "PRIVATE KEY" not in message and "-----" not in message, message


@pytest.mark.parametrize("name", sorted(CORRUPT))
def test_corrupt_keys_are_what_openssl_calls_not_ok(good, name):
    """Where the consumer reads it: OpenSSL's own check refuses the key, and the key's public
    half is still the certificate's, so no pairing check could notice."""
    need("openssl")
    part, _ = CORRUPT[name]
    _, doc = tampered(good, name)
    key = doc[part]["key"].encode()
    check = subprocess.run(["openssl", "rsa", "-check", "-noout"], input=key, capture_output=True, timeout=60)
    assert b"RSA key not ok" in check.stdout + check.stderr, check
    pub = subprocess.run(["openssl", "pkey", "-pubout"], input=key, capture_output=True, timeout=60, check=True)
    published = doc[part]["publicKey"] if part == "serviceAccount" else subprocess.run(
        ["openssl", "x509", "-noout", "-pubkey"], input=doc[part]["certificate"].encode(), capture_output=True,
        timeout=60, check=True).stdout.decode()
    assert pub.stdout.decode() == published
    # and the good key passes the same check: the test can tell them apart
    fine = subprocess.run(["openssl", "rsa", "-check", "-noout"], input=good["rsa"].to_dict()[part]["key"].encode(),
                          capture_output=True, timeout=60)
    assert fine.returncode == 0 and b"RSA key ok" in fine.stdout, fine


# -- what must still be accepted ------------------------------------------------------------

def test_good_bundles_parse(good):
    for bundle in good.values():
        assert secrets.parse(bundle.to_bytes()).to_bytes() == bundle.to_bytes()


def test_whitespace_around_a_block_is_accepted(good):
    doc = good["rsa"].to_dict()
    for part, sub in PEM_FIELDS:
        doc[part][sub] = "\n  " + doc[part][sub] + "\n\n"
    assert secrets.parse(dump(doc)).admin.certificate == doc["admin"]["certificate"]


def test_legacy_admin_is_accepted_and_reissued(good):
    """O=system:masters, CN=kubernetes-admin: what older bakery wrote; the storage layer
    reissues it (reissue_admin_note says so)."""
    doc = good["rsa"].to_dict()
    doc["admin"]["certificate"] = admin_cert(doc, subject=name("kubernetes-admin", "system:masters"))
    bundle = secrets.parse(dump(doc))
    assert secrets.reissue_admin_note(bundle) and "system:masters" in secrets.reissue_admin_note(bundle)
    assert secrets.reissue_admin_note(good["rsa"]) is None


def test_admin_subject_order_does_not_matter(good):
    doc = good["rsa"].to_dict()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubernetes-admin"),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "kubeadm:cluster-admins")])
    doc["admin"]["certificate"] = admin_cert(doc, subject=subject)
    secrets.parse(dump(doc))


def test_new_bundle_does_not_read_its_own_keys_back(monkeypatch, good):
    """The fast path: keys bakery has just generated are not put through parse()'s checks
    (a bundle is checked when it is read, not when it is made)."""
    def refuse(*args, **kwargs):
        raise AssertionError("new_bundle went through parse")
    monkeypatch.setattr(secrets, "parse", refuse)
    monkeypatch.setattr(secrets, "_load_key", refuse)
    cluster, _ = load_cluster(str(LAB))
    secrets.new_bundle(cluster)
