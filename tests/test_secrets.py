"""The secrets bundle: made once, reused, checked; read back by openssl and the CLI.

Values are checked where their consumers read them: openssl parses the certificates and
keys, the CLI renders with the bundle (exit codes, one-line errors), and the kubeadm
configuration in a worker's user-data carries the token and the discovery hash.
"""
from __future__ import annotations

import datetime
import re
import stat
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from bakery.pki import bundle as secrets
from bakery.spec.pipeline import load_cluster

from conftest import EXAMPLES, LAB, need, render_here, run_bakery

TOKEN = re.compile(r"^[a-z0-9]{6}\.[a-z0-9]{16}$")
BUNDLE_PEM_FIELDS = [("ca", "certificate"), ("ca", "key"), ("etcdCa", "certificate"), ("etcdCa", "key"),
                     ("frontProxyCa", "certificate"), ("frontProxyCa", "key"),
                     ("serviceAccount", "publicKey"), ("serviceAccount", "key"),
                     ("admin", "certificate"), ("admin", "key")]


def render(cluster_file, out, *extra, env=None):
    r = run_bakery("render", cluster_file, "--out", out, *extra, env=env)
    return r


def load_bundle(path: Path) -> dict:
    return yaml.safe_load(path.read_bytes())


def user_data(out: Path, node: str) -> dict:
    text = (out / "nodes" / node / "user-data").read_text()
    assert text.startswith("#cloud-config\n")
    return yaml.safe_load(text)


def written(ud: dict, path: str) -> str:
    hits = [f["content"] for f in ud["write_files"] if f["path"] == path]
    assert len(hits) == 1, path
    return hits[0]


def join_config(out: Path, node: str) -> dict:
    docs = list(yaml.safe_load_all(written(user_data(out, node), "/etc/bakery/kubeadm.yaml")))
    return next(d for d in docs if d["kind"] == "JoinConfiguration")


def openssl(*args, input=None):
    need("openssl")
    r = subprocess.run(["openssl", *args], input=input, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout


@pytest.fixture(scope="module")
def lab(renders):
    return renders.example("lab")


@pytest.fixture(scope="module")
def lab_bundle(lab):
    return load_bundle(lab / "secrets.yaml")


# -- what the bundle holds ------------------------------------------------------------

def test_bundle_is_private_and_says_where_it_went(lab):
    mode = stat.S_IMODE((lab / "secrets.yaml").stat().st_mode)
    assert mode == 0o600
    assert stat.S_IMODE(lab.stat().st_mode) == 0o700


def test_bundle_holds_five_keys_and_a_token(lab_bundle):
    text = yaml.safe_dump(lab_bundle)
    # three CAs, the service-account key, the admin key: never one per node
    assert text.count("-----BEGIN RSA " + "PRIVATE KEY-----") == 5  # (split: no key-shaped literal in git)
    assert TOKEN.match(lab_bundle["bootstrapToken"])
    assert lab_bundle["keyAlgorithm"] == "rsa-2048"


@pytest.mark.parametrize("field,cn", [("ca", "kubernetes"), ("etcdCa", "etcd-ca"), ("frontProxyCa", "front-proxy-ca")])
def test_cas_are_cas_with_their_keys(lab_bundle, field, cn):
    cert = lab_bundle[field]["certificate"].encode()
    text = openssl("x509", "-noout", "-text", input=cert).decode()
    assert "CA:TRUE" in text and "Certificate Sign" in text
    assert re.search(rf"Subject: CN ?= ?{cn}\b", text), text
    assert "RSA Public-Key: (2048 bit)" in text or "Public-Key: (2048 bit)" in text
    # the key belongs to the certificate: same public key, as openssl derives it
    from_cert = openssl("x509", "-noout", "-pubkey", input=cert)
    from_key = openssl("pkey", "-pubout", input=lab_bundle[field]["key"].encode())
    assert from_cert == from_key


def test_cas_are_distinct(lab_bundle):
    certs = {lab_bundle[f]["certificate"] for f in ("ca", "etcdCa", "frontProxyCa")}
    keys = {lab_bundle[f]["key"] for f in ("ca", "etcdCa", "frontProxyCa", "serviceAccount", "admin")}
    assert len(certs) == 3 and len(keys) == 5


def test_service_account_pair_matches(lab_bundle):
    pub = openssl("pkey", "-pubout", input=lab_bundle["serviceAccount"]["key"].encode())
    assert pub.decode() == lab_bundle["serviceAccount"]["publicKey"]


def test_admin_certificate_is_verified_by_openssl(lab_bundle, tmp_path):
    (tmp_path / "ca.crt").write_text(lab_bundle["ca"]["certificate"])
    (tmp_path / "admin.crt").write_text(lab_bundle["admin"]["certificate"])
    out = openssl("verify", "-CAfile", str(tmp_path / "ca.crt"), str(tmp_path / "admin.crt")).decode()
    assert out.strip().endswith("OK")
    assert subject_of(lab_bundle["admin"]["certificate"]) == ADMIN_SUBJECT
    text = openssl("x509", "-noout", "-text", "-in", str(tmp_path / "admin.crt")).decode()
    assert "TLS Web Client Authentication" in text and "CA:FALSE" in text


# kubeadm >= 1.29 issues admin.conf as CN kubernetes-admin in kubeadm:cluster-admins, bound
# by the ClusterRoleBinding that init creates; system:masters is super-admin.conf's
# (kubernetes/kubernetes cmd/kubeadm/app/phases/kubeconfig/kubeconfig.go, getKubeConfigSpecsBase).
ADMIN_SUBJECT = [("O", "kubeadm:cluster-admins"), ("CN", "kubernetes-admin")]


def subject_of(pem: str) -> list[tuple[str, str]]:
    """The certificate's subject as openssl prints it (RFC 2253, one RDN per item), in
    certificate order."""
    line = openssl("x509", "-noout", "-subject", "-nameopt", "RFC2253", input=pem.encode()).decode().strip()
    rdns = line.split("=", 1)[1].split(",")  # RFC 2253 lists the last RDN first
    return [tuple(r.split("=", 1)) for r in reversed(rdns)]


def admin_conf_cert(out: Path) -> str:
    import base64

    conf = yaml.safe_load((out / "admin.conf").read_text())
    (user,) = conf["users"]
    ctx = next(c for c in conf["contexts"] if c["name"] == conf["current-context"])
    assert ctx["context"]["user"] == user["name"]
    return base64.b64decode(user["user"]["client-certificate-data"]).decode()


def test_admin_conf_is_in_kubeadm_cluster_admins_not_system_masters(lab):
    """Where kubectl reads it: the client certificate of admin.conf's current context."""
    assert subject_of(admin_conf_cert(lab)) == ADMIN_SUBJECT


def _legacy_admin(bundle: dict, tmp_path: Path) -> str:
    """An admin certificate as older bakery made it (O=system:masters), made by openssl
    from the bundle's own CA and admin key."""
    for name, text in (("ca.crt", bundle["ca"]["certificate"]), ("ca.key", bundle["ca"]["key"]),
                       ("admin.key", bundle["admin"]["key"])):
        (tmp_path / name).write_text(text)
    (tmp_path / "ext").write_text("basicConstraints=critical,CA:FALSE\nextendedKeyUsage=clientAuth\n")
    csr = openssl("req", "-new", "-key", str(tmp_path / "admin.key"), "-subj", "/O=system:masters/CN=kubernetes-admin")
    return openssl("x509", "-req", "-CA", str(tmp_path / "ca.crt"), "-CAkey", str(tmp_path / "ca.key"),
                   "-set_serial", "7", "-days", "300", "-extfile", str(tmp_path / "ext"), input=csr).decode()


def test_an_older_bundle_gets_its_admin_certificate_reissued_once(tmp_path):
    out = render_here(LAB, tmp_path / "lab")
    bundle = load_bundle(out / "secrets.yaml")
    bundle["admin"]["certificate"] = _legacy_admin(bundle, tmp_path)
    (out / "secrets.yaml").write_text(yaml.safe_dump(bundle))
    old = load_bundle(out / "secrets.yaml")
    assert subject_of(old["admin"]["certificate"]) == [("O", "system:masters"), ("CN", "kubernetes-admin")]

    check = run_bakery("render", LAB, "--out", out, "--check")
    assert check.returncode == 1 and "admin.conf" in check.stdout and "a render reissues it" in check.stdout
    assert load_bundle(out / "secrets.yaml") == old  # --check writes nothing
    info = run_bakery("secrets", "check", LAB, "--secrets", out / "secrets.yaml")
    assert info.returncode == 0 and "a render reissues it" in info.stdout
    assert load_bundle(out / "secrets.yaml") == old

    r = render(LAB, out)
    assert r.returncode == 0, r.stderr
    assert "reissued it" in r.stdout and "system:masters" in r.stdout
    new = load_bundle(out / "secrets.yaml")
    # only the admin certificate changed: CAs, every key and the token are kept
    assert {k: v for k, v in new.items() if k != "admin"} == {k: v for k, v in old.items() if k != "admin"}
    assert new["admin"]["key"] == old["admin"]["key"]
    assert subject_of(new["admin"]["certificate"]) == ADMIN_SUBJECT
    assert subject_of(admin_conf_cert(out)) == ADMIN_SUBJECT
    (tmp_path / "admin.crt").write_text(new["admin"]["certificate"])
    assert openssl("verify", "-CAfile", str(tmp_path / "ca.crt"), str(tmp_path / "admin.crt")).strip().endswith(b"OK")
    assert openssl("x509", "-noout", "-pubkey", input=new["admin"]["certificate"].encode()) == \
        openssl("pkey", "-pubout", input=new["admin"]["key"].encode())

    # from then on the bundle is stable again, byte for byte, and says nothing more
    first = tree(out)
    again = render(LAB, out)
    assert again.returncode == 0 and "reissued" not in again.stdout
    assert tree(out) == first


def test_admin_certificate_is_not_verified_by_another_ca(lab_bundle, tmp_path):
    """The check above can fail: the etcd CA did not sign the admin certificate."""
    (tmp_path / "etcd.crt").write_text(lab_bundle["etcdCa"]["certificate"])
    (tmp_path / "admin.crt").write_text(lab_bundle["admin"]["certificate"])
    need("openssl")
    r = subprocess.run(["openssl", "verify", "-CAfile", tmp_path / "etcd.crt", tmp_path / "admin.crt"],
                       capture_output=True, text=True)
    assert r.returncode != 0


def test_discovery_hash_is_what_openssl_computes(lab, lab_bundle):
    der = openssl("pkey", "-pubin", "-outform", "der",
                  input=openssl("x509", "-pubkey", "-noout", input=lab_bundle["ca"]["certificate"].encode()))
    digest = openssl("dgst", "-sha256", input=der).decode().split()[-1]
    expected = f"sha256:{digest}"
    assert lab_bundle["discoveryHash"] == expected
    # where kubeadm reads it: the worker's JoinConfiguration
    join = join_config(lab, "k8s-node1")
    assert join["discovery"]["bootstrapToken"]["caCertHashes"] == [expected]
    assert join["discovery"]["bootstrapToken"]["token"] == lab_bundle["bootstrapToken"]


def test_validity_follows_cluster_yaml(lab_bundle, tmp_path):
    def end(pem):
        text = openssl("x509", "-noout", "-enddate", input=pem.encode()).decode().strip().split("=", 1)[1]
        return datetime.datetime.strptime(text, "%b %d %H:%M:%S %Y %Z")
    now = datetime.datetime.utcnow()
    ca_days = (end(lab_bundle["ca"]["certificate"]) - now).days
    admin_days = (end(lab_bundle["admin"]["certificate"]) - now).days
    assert 3648 <= ca_days <= 3650  # caValidityDays default
    assert 363 <= admin_days <= 365  # adminCertValidityDays default


def test_ecdsa_bundle(renders, tmp_path):
    b = load_bundle(renders.example("single") / "secrets.yaml")
    assert b["keyAlgorithm"] == "ecdsa-p256"
    for field in ("ca", "etcdCa", "frontProxyCa", "admin"):
        text = openssl("x509", "-noout", "-text", input=b[field]["certificate"].encode()).decode()
        assert "id-ecPublicKey" in text and ("prime256v1" in text or "P-256" in text), field
    (tmp_path / "ca.crt").write_text(b["ca"]["certificate"])
    (tmp_path / "admin.crt").write_text(b["admin"]["certificate"])
    assert openssl("verify", "-CAfile", str(tmp_path / "ca.crt"), str(tmp_path / "admin.crt")).strip().endswith(b"OK")
    assert "-----BEGIN EC " + "PRIVATE KEY-----" in b["serviceAccount"]["key"]


# -- reuse, rotation, byte-identical renders --------------------------------------------

def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_second_render_reuses_the_bundle_byte_for_byte(tmp_path):
    out = render_here(LAB, tmp_path / "lab")
    first = tree(out)
    r = render(LAB, out)
    assert r.returncode == 0, r.stderr
    assert "created the secrets bundle" not in r.stdout
    assert tree(out) == first


def test_changing_nodes_never_rotates_a_ca(tmp_path):
    out = render_here(LAB, tmp_path / "lab")
    before = (out / "secrets.yaml").read_bytes()
    grown = tmp_path / "cluster.yaml"
    grown.write_text(LAB.read_text().replace(
        "    - {name: k8s-node2, role: worker, address: 192.168.56.32}\n",
        "    - {name: k8s-node2, role: worker, address: 192.168.56.32}\n"
        "    - {name: k8s-node3, role: worker, address: 192.168.56.33}\n"))
    r = render(grown, out)
    assert r.returncode == 0, r.stderr
    assert (out / "secrets.yaml").read_bytes() == before
    assert (out / "nodes" / "k8s-node3" / "user-data").exists()


def test_rotate_token_changes_only_the_token(tmp_path):
    out = render_here(LAB, tmp_path / "lab")
    old = load_bundle(out / "secrets.yaml")
    old_tree = tree(out)
    r = render(LAB, out, "--rotate-token")
    assert r.returncode == 0, r.stderr
    new = load_bundle(out / "secrets.yaml")
    assert new["bootstrapToken"] != old["bootstrapToken"] and TOKEN.match(new["bootstrapToken"])
    token_fields = ("bootstrapToken", "bootstrapTokenCreated")  # the token and when it was made
    assert new["bootstrapTokenCreated"] >= old["bootstrapTokenCreated"]
    assert {k: v for k, v in new.items() if k not in token_fields} == \
        {k: v for k, v in old.items() if k not in token_fields}
    # the command that registers it, with the TTL from cluster.yaml
    assert f"kubeadm token create {new['bootstrapToken']} --ttl 24h0m0s" in r.stdout
    # every seed now carries the new token, none the old one; admin.conf is unchanged
    assert join_config(out, "k8s-node2")["discovery"]["bootstrapToken"]["token"] == new["bootstrapToken"]
    for name, content in tree(out).items():
        assert old["bootstrapToken"].encode() not in content, name
    assert tree(out)["admin.conf"] == old_tree["admin.conf"]


def test_render_prints_no_secret(tmp_path):
    out = tmp_path / "lab"
    r = render(LAB, out)
    assert r.returncode == 0
    b = load_bundle(out / "secrets.yaml")
    for stream in (r.stdout, r.stderr):
        assert "PRIVATE KEY" not in stream and b["bootstrapToken"] not in stream
        assert b["bootstrapToken"].split(".")[1] not in stream


def test_bundle_outside_the_tree(tmp_path):
    out, bundle = tmp_path / "lab", tmp_path / "vault" / "lab-secrets.yaml"
    r = render(LAB, out, "--secrets", bundle)
    assert r.returncode == 0, r.stderr
    assert bundle.exists() and not (out / "secrets.yaml").exists()
    assert stat.S_IMODE(bundle.stat().st_mode) == 0o600
    again = render(LAB, tmp_path / "other", "--secrets", bundle)
    assert again.returncode == 0
    assert (out / "admin.conf").read_bytes() == (tmp_path / "other" / "admin.conf").read_bytes()


def test_check_mode_accepts_a_fresh_render(tmp_path):
    """The CLI's --check against a render made in-process (render_here): also pins that
    the tests' in-process renders are the command's."""
    out = render_here(LAB, tmp_path / "lab")
    r = run_bakery("render", LAB, "--out", out, "--check")
    assert r.returncode == 0, r.stdout + r.stderr


# -- bad bundles: exit 2, one line, no secret -------------------------------------------

@pytest.fixture(scope="module")
def model():
    cluster, _ = load_cluster(str(LAB))
    return cluster


@pytest.fixture(scope="module")
def good_bundle(model):
    return secrets.new_bundle(model)


def expired_ca_bundle(model, good):
    now = datetime.datetime.now(datetime.UTC)
    ca = secrets._make_ca("kubernetes", "rsa-2048", 20, now)  # ends in 20 days
    admin = secrets._make_admin(ca, "rsa-2048", 365, now)
    return replace(good, ca=ca, admin=admin)


def swapped_key_bundle(model, good):
    return replace(good, ca=secrets.KeyPair(good.ca.certificate, good.etcd_ca.key))


BAD = {
    "not-yaml": lambda m, g: b"ca: [unclosed\n  key: {\n",
    "not-a-bundle": lambda m, g: b"- just\n- a list\n",
    "binary": lambda m, g: b"\xff\xfe\x00garbage",
    "missing-field": lambda m, g: g.to_bytes().replace(b"frontProxyCa:", b"frontProxyCA:"),
    "bad-token": lambda m, g: g.to_bytes().replace(g.token.encode(), b"NOT.A.TOKEN"),
    "ca-key-mismatch": lambda m, g: swapped_key_bundle(m, g).to_bytes(),
    "ca-expires-soon": lambda m, g: expired_ca_bundle(m, g).to_bytes(),
    "truncated-pem": lambda m, g: g.to_bytes().replace(g.ca.certificate.splitlines()[3].encode(), b"AAAA"),
    # a second CA appended to ca.certificate would reach ca.crt and admin.conf (issue 16);
    # tests/test_bundle_tamper.py tries every other tampering on parse() itself
    "ca-second-certificate": lambda m, g: replace(
        g, ca=secrets.KeyPair(g.ca.certificate + g.etcd_ca.certificate, g.ca.key)).to_bytes(),
}
REASON = {
    "not-yaml": "not valid YAML", "not-a-bundle": "not a bakery secrets bundle", "binary": "",
    "missing-field": "frontProxyCa is missing", "bad-token": "bootstrapToken is not of the form",
    "ca-key-mismatch": "ca.key does not belong to ca.certificate",
    "ca-expires-soon": "expires on", "truncated-pem": "ca",
    "ca-second-certificate": "ca.certificate holds 2 PEM blocks",
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_bundle_is_one_line_exit_2(case, model, good_bundle, tmp_path):
    out = tmp_path / "lab"
    out.mkdir(mode=0o700)
    path = out / "secrets.yaml"
    path.write_bytes(BAD[case](model, good_bundle))
    path.chmod(0o600)
    before = path.read_bytes()
    r = render(LAB, out)
    assert r.returncode == 2, (case, r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if "warning[" not in ln]
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert "secrets-bundle" in lines[0] and str(path) in lines[0]
    assert REASON[case] in lines[0], lines[0]
    assert "PRIVATE KEY" not in r.stderr and good_bundle.token not in r.stderr
    # nothing written, the bundle untouched
    assert path.read_bytes() == before
    assert not (out / "nodes").exists()


def test_bundle_of_another_cluster_is_refused(model, good_bundle, tmp_path):
    other = replace(good_bundle, cluster="someone-else")
    path = tmp_path / "other.yaml"
    path.write_bytes(other.to_bytes())
    r = render(LAB, tmp_path / "lab", "--secrets", path)
    assert r.returncode == 2 and "someone-else" in r.stderr and len(r.stderr.strip().splitlines()) == 2
    assert "secrets-cluster" in r.stderr


def test_key_algorithm_change_keeps_the_cas(good_bundle, tmp_path):
    """The bundle's CAs decide; cluster.yaml asking for another algorithm is an error that
    says how to fix it, not a silent new CA."""
    path = tmp_path / "lab-secrets.yaml"
    path.write_bytes(good_bundle.to_bytes())
    changed = tmp_path / "cluster.yaml"
    changed.write_text(LAB.read_text().replace("  image:\n", "  secrets: {keyAlgorithm: ecdsa-p256}\n  image:\n", 1))
    r = render(changed, tmp_path / "lab", "--secrets", path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "secrets-key-algorithm" in r.stderr and "keyAlgorithm: rsa-2048" in r.stderr
    assert path.read_bytes() == good_bundle.to_bytes()


def test_parse_rejects_expired_admin(model, good_bundle):
    now = datetime.datetime.now(datetime.UTC)
    admin = secrets._make_admin(good_bundle.ca, "rsa-2048", 365, now - datetime.timedelta(days=350))
    with pytest.raises(secrets.BadBundle, match="admin.certificate .* expires on"):
        secrets.parse(replace(good_bundle, admin=admin).to_bytes())


def test_parse_rejects_admin_signed_by_another_ca(good_bundle):
    now = datetime.datetime.now(datetime.UTC)
    admin = secrets._make_admin(good_bundle.etcd_ca, "rsa-2048", 365, now)
    with pytest.raises(secrets.BadBundle, match="not signed by the cluster CA"):
        secrets.parse(replace(good_bundle, admin=admin).to_bytes())


def test_round_trip_is_exact(good_bundle):
    data = good_bundle.to_bytes()
    assert secrets.parse(data).to_bytes() == data


def test_tokens_are_random_and_well_formed():
    tokens = {secrets.new_token() for _ in range(200)}
    assert len(tokens) == 200 and all(TOKEN.match(t) for t in tokens)


@pytest.mark.parametrize("seconds,text", [(0, "0s"), (45, "45s"), (90 * 60, "1h30m0s"), (86400, "24h0m0s"),
                                          (15 * 60, "15m0s")])
def test_go_duration(seconds, text):
    assert secrets.go_duration(seconds) == text


def test_check_mode_without_bundle_is_input_error(tmp_path):
    r = run_bakery("render", LAB, "--out", tmp_path / "nothing", "--check")
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_bundle_repr_shows_no_secret():
    """A traceback or a test report that prints the bundle must not print keys or the token."""
    from bakery.pki.bundle import new_bundle
    from bakery.spec.pipeline import load_cluster

    cluster, _ = load_cluster(str(EXAMPLES / "single" / "cluster.yaml"))
    bundle = new_bundle(cluster)
    text = repr(bundle)
    assert "PRIVATE KEY" not in text and bundle.token not in text and "BEGIN" not in text


def test_secrets_check_reports_expiry_without_secrets(renders):
    out = renders.example("lab")
    r = run_bakery("secrets", "check", LAB, "--secrets", out / "secrets.yaml")
    assert r.returncode == 0, r.stderr
    lines = {ln.split()[0]: ln for ln in r.stdout.splitlines()}
    assert set(lines) >= {"ca", "etcdCa", "frontProxyCa", "admin", "token"}
    assert re.search(r"expires \d{4}-\d\d-\d\d \(36[45]\d days\)", lines["ca"])
    token = yaml.safe_load((out / "secrets.yaml").read_text())["bootstrapToken"]
    assert token not in r.stdout and token.split(".")[1] not in r.stdout
    assert "PRIVATE" not in r.stdout + r.stderr


def test_secrets_check_fails_on_a_soon_expiring_bundle(tmp_path):
    import datetime

    from bakery.pki.bundle import new_bundle
    from bakery.spec.pipeline import load_cluster

    from conftest import LAB
    cluster, _ = load_cluster(str(LAB))
    long_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=3650 - 10)
    path = tmp_path / "old.yaml"
    path.write_bytes(new_bundle(cluster, now=long_ago).to_bytes())
    r = run_bakery("secrets", "check", LAB, "--secrets", path)
    assert r.returncode == 2
    assert "(9 days)" in r.stdout or "(10 days)" in r.stdout
    assert "expires on" in r.stderr and "Traceback" not in r.stderr
    # and render refuses it the same way, writing nothing
    r = run_bakery("render", LAB, "--out", tmp_path / "out", "--secrets", path)
    assert r.returncode == 2 and not (tmp_path / "out").exists()
