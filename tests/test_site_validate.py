"""Validation of the site's settings (issue 18) beyond the bad-file corpus (tests/data/bad/site-*):
the warnings, values that must pass, and the facts the checks rely on."""
from __future__ import annotations

import datetime
import json
import re

import pytest
import yaml

from conftest import ROOT

ENTERPRISE = ROOT / "examples" / "enterprise" / "cluster.yaml"


def _validate(tmp_path, mutate):
    from bakery.spec.pipeline import check_file

    data = yaml.safe_load(ENTERPRISE.read_text())
    mutate(data["spec"])
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    report = check_file(str(path)).report
    return [(d.check, d.severity, d.message) for d in report.diagnostics]


def test_the_enterprise_example_is_valid_without_warnings(tmp_path):
    assert _validate(tmp_path, lambda s: None) == []


def _cert(*, ca: bool, days: int) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "site test")])
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(1).not_valid_before(now - datetime.timedelta(days=400))
               .not_valid_after(now + datetime.timedelta(days=days)))
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def test_a_leaf_certificate_and_an_expired_ca_are_trusted_with_a_warning(tmp_path):
    leaf, expired = _cert(ca=False, days=30), _cert(ca=True, days=-1)
    found = _validate(tmp_path, lambda s: s["trust"].update(caCertificates=[leaf, expired]))
    assert [(c, s) for c, s, _ in found] == [("ca-certificate", "warning"), ("ca-certificate", "warning")]
    assert "not a CA certificate" in found[0][2] and "expired" in found[1][2]


def test_a_private_key_given_as_a_ca_is_refused_and_not_echoed(tmp_path):
    """Made here, not committed: no key-shaped text lives in the repository."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from conftest import run_bakery

    key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    for entry in (key, _cert(ca=True, days=30) + key):
        found = _validate(tmp_path, lambda s, e=entry: s["trust"].update(caCertificates=[e]))
        assert [(c, s) for c, s, _ in found] == [("ca-certificate", "error")] and "private key" in found[0][2]
    r = run_bakery("validate", tmp_path / "cluster.yaml")
    body = key.splitlines()[1]
    assert r.returncode == 2 and "[ca-certificate]" in r.stderr and body not in r.stdout + r.stderr
    assert re.search(r"cluster\.yaml:\d+:\d+: error\[ca-certificate\]", r.stderr)


def test_two_certificates_in_one_entry_and_the_same_one_twice_are_refused(tmp_path):
    a, b = _cert(ca=True, days=30), _cert(ca=True, days=30)
    found = _validate(tmp_path, lambda s: s["trust"].update(caCertificates=[a + b]))
    assert found[0][:2] == ("ca-certificate", "error") and "2 certificate blocks" in found[0][2]
    found = _validate(tmp_path, lambda s: s["trust"].update(caCertificates=[a, a]))
    assert found[0][:2] == ("ca-certificate", "error") and "same certificate" in found[0][2]


def test_proxy_warnings(tmp_path):
    def http_only(s):
        s["proxy"]["https"] = None
    found = _validate(tmp_path, http_only)
    assert [(c, s) for c, s, _ in found] == [("site-url", "warning")] and "no https proxy" in found[0][2]

    def no_proxy_only(s):
        s["proxy"] = {"noProxy": [".corp.example.com"]}
    assert [c for c, _, _ in _validate(tmp_path, no_proxy_only)] == ["site-url"]


def test_an_audit_policy_with_auditing_off_warns(tmp_path):
    def policy_off(s):
        s["kubernetes"]["auditPolicy"] = {"enabled": False, "policy": {"rules": [{"level": "Metadata"}]}}
    assert [(c, s) for c, s, _ in _validate(tmp_path, policy_off)] == [("audit-policy", "warning")]


@pytest.mark.parametrize("fields", [
    {"cgroupDriver": "systemd", "containerRuntimeEndpoint": "unix:///run/containerd/containerd.sock"},  # bakery's
    {"evictionHard": {"memory.available": "5%"}, "systemReserved": {"cpu": "500m", "memory": "1Gi"}},
    {"shutdownGracePeriod": "30s", "featureGates": {"SomeGate": True}, "logging": {"format": "json"}},
    {"authentication": {"x509": {"clientCAFile": "/etc/kubernetes/pki/ca.crt"}, "webhook": {"cacheTTL": "2m0s"}}},
    {"tlsCipherSuites": ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"], "podPidsLimit": 4096, "cpuCFSQuota": False},
])
def test_kubelet_fields_that_fit_the_kubelet_types_pass(tmp_path, fields):
    assert _validate(tmp_path, lambda s: s["kubernetes"].update(kubelet=fields)) == []


@pytest.mark.parametrize("fields, check, words", [
    ({"podPidsLimit": "4096"}, "kubelet-field", "not a whole number"),
    ({"featureGates": {"SomeGate": "true"}}, "kubelet-field", "featureGates.SomeGate is not true or false"),
    ({"tlsCipherSuites": "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"}, "kubelet-field", "not a list"),
    ({"systemReserved": {"memory": 1024}}, "kubelet-field", "systemReserved.memory is not text"),
    ({"registerWithTaints": [{"key": "a", "effect": "NoSchedule"}]}, "kubelet-owned", "spec.nodes[].taints"),
    ({"clusterDomain": "cluster.local"}, "kubelet-owned", "spec.network.dnsDomain"),
    ({"staticPodPath": "/srv/manifests"}, "kubelet-owned", "staticPodPath"),
    ({"kind": "KubeletConfig"}, "kubelet-owned", "kind"),
])
def test_kubelet_fields_that_do_not_fit_are_refused_by_name(tmp_path, fields, check, words):
    found = _validate(tmp_path, lambda s: s["kubernetes"].update(kubelet=fields))
    assert [(c, s) for c, s, _ in found] == [(check, "error")], found
    assert words in found[0][2]


def test_the_kubelet_field_tree_is_the_vendored_upstream_one():
    """The product reads the same derived file the stand-ins judge KubeletConfiguration with."""
    from bakery.resources import kubelet_fields

    spec = json.loads((ROOT / "schemas" / "kubelet-config-v1beta1.json").read_text())
    assert kubelet_fields() == spec
    assert spec["sources"][0]["repository"] == "github.com/kubernetes/kubelet"
    for name in ("maxPods", "cgroupDriver", "evictionHard", "featureGates", "serializeImagePulls"):
        assert name in spec["fields"]


def test_every_owned_flag_is_refused_and_names_the_setting_to_use(tmp_path):
    from bakery import owned

    for component, flags in owned.COMPONENT_FLAGS.items():
        for name, rule in flags.items():
            found = _validate(tmp_path, lambda s, c=component, n=name: s["kubernetes"][c].update(extraArgs={n: "x"}))
            assert [(c, s) for c, s, _ in found] == [("extra-args-owned", "error")], (component, name, found)
            assert rule.instead in found[0][2]


def test_every_path_bakery_places_on_a_node_is_owned(tmp_path):
    """spec.image.files cannot overwrite a file of bakery's: each path of the image's files, of
    the node plan and of every node's write_files (the enterprise example turns every feature on)
    is covered by nodefacts.OWNED_PATHS, or is a registry's hosts.toml the check refuses too."""
    from bakery import nodefacts
    from bakery import plan as P
    from bakery.image.steps import image_files
    from bakery.spec.pipeline import load_cluster

    from conftest import run_bakery

    cluster, _ = load_cluster(str(ENTERPRISE))
    plan = P.image_plan(cluster)
    site = {f.path for f in cluster.image.files} | {f"/usr/local/share/ca-certificates/bakery-site-{i}.crt"
                                                    for i in range(len(cluster.ca_certificates))}
    paths = [f.path for f in image_files(cluster, plan) if f.path not in site]
    paths += [v for k, v in vars(P.paths).items() if k.isupper() and isinstance(v, str) and v.startswith("/")]
    r = run_bakery("render", ENTERPRISE, "--out", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    for user_data in (tmp_path / "out" / "nodes").glob("*/user-data"):
        paths += [f["path"] for f in yaml.safe_load(user_data.read_text())["write_files"]]
    registries = tuple(f"/etc/containerd/certs.d/{host}" for host, _ in cluster.mirrors.registries)
    uncovered = [p for p in paths if nodefacts.owned_path(p) is None and nodefacts.owned_path(p, registries) is None]
    assert not uncovered, uncovered
    assert any(p.startswith("/etc/containerd/certs.d/") for p in paths)
