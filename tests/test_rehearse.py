"""The cluster rehearsal (tests/rehearse.py): every example and randomized clusters reach the
first-boot sentinel on every node against the faithful stand-ins, and each contract rule the
stand-ins enforce fails a seed broken in that one way, at the right node and step.

Needs root (namespaces, mounts, chroot), as CI runs; skipped otherwise."""
from __future__ import annotations

import base64
import ipaddress
import json
import os
import random
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from bakery import versions

from clusters import make_cluster
from conftest import ROOT

sys.path.insert(0, str(ROOT / "tests"))
from lab.driver import Result, rehearse
from lab.seeds import versions_env

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the rehearsal needs root (namespaces, mounts, chroot)")

KUBEADM = "/etc/bakery/kubeadm.yaml"
VALUES = "/etc/bakery/firstboot.env"
SCRIPT = "/usr/local/lib/bakery/firstboot.sh"
SPECS = ROOT / "tests" / "data" / "specs"
OSES = sorted(versions.OS_RELEASES)  # every release, so UEFI (debian-13, ubuntu-26.04) and chrony too


def play(out: Path, **kw) -> Result:
    return rehearse(out, say=lambda line: None, **kw)


def assert_clean(result: Result, out: Path) -> None:
    assert result.ok, f"{result.failure}\n" + "\n".join(result.lines[-8:])
    nodes = sorted(p.name for p in (out / "nodes").iterdir())
    assert sorted(ln.split(":")[0] for ln in result.lines if ln.endswith("sentinel: ok")) == nodes
    cni = versions_env(out)["CNI"]
    assert [ln for ln in result.lines if ln.startswith("cluster:")] == [
        "cluster: nodes: ok", f"cluster: {cni}: ok", "cluster: admin.conf: ok", "cluster: secrets: ok"]


# -- clean clusters pass ------------------------------------------------------------------

@pytest.mark.parametrize("example", ["lab", "single", "ha"])
def test_every_example_rehearses(renders, example):
    out = renders.example(example)
    result = play(out)
    assert_clean(result, out)
    st = result.state
    # what the real cluster would hold: one etcd member per control-plane node, the admins' binding
    cps = [n for n, v in st["nodes"].items() if v["role"] == "control-plane"]
    assert sorted(st["etcd"]) == sorted(cps) and st["rbac"] == ["kubeadm:cluster-admins"]


def containerd_for(minor: str) -> str:
    """A containerd release the catalog recommends for this Kubernetes minor (the newest minor's floor)."""
    table = versions.KUBERNETES[minor].containerd_min
    return table[max(table, key=versions.parse_version)]


def random_cluster(seed: int) -> str:
    rng = random.Random(seed)
    ha = rng.random() < 0.5
    nodes = rng.randint(3, 4) if ha else rng.randint(1, 3)
    net = ipaddress.ip_network(rng.choice(["192.168.56.0/24", "10.20.0.0/24", "172.16.8.0/22"]))
    minor = rng.choice(sorted(versions.KUBERNETES, key=versions.parse_version)[-3:])
    k8s = versions.KUBERNETES[minor].newest_patch
    calico = rng.choice(versions.calico_versions_for(minor))
    containerd = containerd_for(minor)
    extra = ""
    if ha or rng.random() < 0.3:
        extra = f"  controlPlane: {{vip: {net[-2]}}}\n"
    return make_cluster(nodes, name=f"r{seed}", control_planes=3 if ha else 1, node_cidr=str(net),
                        os=rng.choice(OSES), k8s=k8s, calico=calico,
                        containerd=containerd, builders=("qemu",), extra_spec=extra)


@pytest.mark.parametrize("seed", [3, 11, 19, 27, 42])
def test_randomized_clusters_rehearse(renders, seed):
    out = renders.text(random_cluster(seed))
    assert_clean(play(out), out)


def test_the_randomized_clusters_cover_the_cases():
    """single and HA, Debian and Ubuntu, with and without a VIP."""
    texts = [yaml.safe_load(random_cluster(s)) for s in (3, 11, 19, 27, 42)]
    specs = [t["spec"] for t in texts]
    assert {len([n for n in s["nodes"] if n["role"] == "control-plane"]) for s in specs} == {1, 3}
    assert {s["os"].split("-")[0] for s in specs} == {"debian", "ubuntu"}
    assert {bool((s.get("controlPlane") or {}).get("vip")) for s in specs} == {True, False}


@pytest.mark.parametrize("release", sorted(versions.CALICO))
def test_each_calico_release_sends_every_object_once(renders, release):
    """Each object of the release's install reaches the API server exactly once, the
    Installation after its CRD (the defect of Calico's CRDs created twice fails here)."""
    minor = max((m for m in versions.KUBERNETES if versions.CALICO[release].supports(m)), key=versions.parse_version)
    out = renders.text(make_cluster(1, name="cal", k8s=versions.KUBERNETES[minor].newest_patch, calico=release,
                                    containerd=containerd_for(minor), builders=("qemu",)))
    result = play(out)
    assert_clean(result, out)
    sent = result.state["sent"]
    assert len(sent) == len(set(sent)), [k for k in sent if sent.count(k) > 1][:5]
    objects = json.loads((SPECS / "calico-manifests-objects.json").read_text())[release]
    expected = {"|".join([api.rpartition("/")[0] if "/" in api else "", kind, ns or "", name])
                for m in versions.CALICO[release].manifests() for api, kind, ns, name in objects[m]}
    assert set(sent) == expected | {"operator.tigera.io|Installation||default"}
    assert sent.index("apiextensions.k8s.io|CustomResourceDefinition||installations.operator.tigera.io") < \
        sent.index("operator.tigera.io|Installation||default")


# -- Cilium (issue 20) -------------------------------------------------------------------------

def cilium_cluster(release: str, kpr: bool, nodes: int = 1, *, ha: bool = False, name: str = "cil",
                   os: str = "ubuntu-24.04", net: str = "192.168.56.0/24", vip: bool = False) -> str:
    minor = max((m for m in versions.KUBERNETES if versions.CILIUM[release].supports(m)), key=versions.parse_version)
    extra = f"  controlPlane: {{vip: {ipaddress.ip_network(net)[-2]}}}\n" if vip else ""
    return make_cluster(nodes, name=name, control_planes=3 if ha else 1, node_cidr=net, os=os,
                        k8s=versions.KUBERNETES[minor].newest_patch, containerd=containerd_for(minor),
                        builders=("qemu",), extra_spec=extra,
                        cni=f"{{cilium: {{version: {release}, kubeProxyReplacement: {str(kpr).lower()}}}}}")


def helm_calls(result: Result, node: str) -> list[str]:
    return [c for c in result.calls[node] if c.startswith("helm ") and not c.startswith("helm version")]


@pytest.mark.parametrize("kpr", [False, True])
def test_cilium_clusters_rehearse(renders, kpr):
    out = renders.text(cilium_cluster("v1.20.0", kpr, nodes=3))
    result = play(out)
    assert_clean(result, out)
    st = result.state
    # kubeadm installed kube-proxy exactly when Cilium does not replace it
    assert ("apps|DaemonSet|kube-system|kube-proxy" in st["objects"]) is (not kpr)
    assert st["addons"]["kube-proxy"] is (not kpr)
    [rev] = st["helm"]["kube-system/cilium"]
    assert (rev["chart"], rev["version"], rev["status"]) == ("cilium", "1.20.0", "deployed")
    assert rev["values"]["kubeProxyReplacement"] is kpr
    assert helm_calls(result, "cp0") == [
        "helm upgrade --install cilium /opt/bakery/cilium/cilium-1.20.0.tgz --namespace kube-system "
        "--values /etc/bakery/cilium-values.yaml --kubeconfig /etc/kubernetes/admin.conf"]
    assert not helm_calls(result, "w1")  # only the init node installs the pod network


def random_cilium_cluster(seed: int) -> str:
    rng = random.Random(seed)
    release = rng.choice(sorted(versions.CILIUM))
    ha = rng.random() < 0.5
    net = rng.choice(["192.168.56.0/24", "10.20.0.0/24", "172.16.8.0/22"])
    return cilium_cluster(release, rng.random() < 0.5, rng.randint(3, 4) if ha else rng.randint(1, 3), ha=ha,
                          name=f"c{seed}", os=rng.choice(OSES), net=net,
                          vip=ha or rng.random() < 0.3)


CILIUM_SEEDS = [4, 7, 17, 20]


@pytest.mark.parametrize("seed", CILIUM_SEEDS)
def test_randomized_cilium_clusters_rehearse(renders, seed):
    out = renders.text(random_cilium_cluster(seed))
    assert_clean(play(out), out)


def test_the_randomized_cilium_clusters_cover_the_cases():
    """every catalog release, with and without kube-proxy replacement, single and HA."""
    specs = [yaml.safe_load(random_cilium_cluster(s))["spec"] for s in CILIUM_SEEDS]
    assert {s["cni"]["cilium"]["version"] for s in specs} == set(versions.CILIUM)
    assert {s["cni"]["cilium"]["kubeProxyReplacement"] for s in specs} == {True, False}
    assert {len([n for n in s["nodes"] if n["role"] == "control-plane"]) for s in specs} == {1, 3}


def test_the_cilium_install_runs_again_after_a_failed_try(renders, tmp_path):
    """helm writes the release, then fails (a hook, a timeout); the node reboots and the unit
    runs the step again: `upgrade --install` upgrades the failed release."""
    out = renders.text(cilium_cluster("v1.19.6", True))
    result = play(out, faults={"cp0": {"helmFail": 1, "boots": 2}})
    assert_clean(result, out)
    assert [r["status"] for r in result.state["helm"]["kube-system/cilium"]] == ["failed", "deployed"]
    assert len(helm_calls(result, "cp0")) == 2
    # `helm install` is not idempotent: the second boot fails at its step
    broken = renders.copy(out, tmp_path / "out")
    edit_file(broken, "cp0", SCRIPT, lambda t: t.replace("helm upgrade --install cilium", "helm install cilium"))
    result = play(broken, faults={"cp0": {"helmFail": 1, "boots": 2}})
    assert result.failure is not None and (result.failure.node, result.failure.step) == ("cp0", "cni")
    assert "cannot re-use a name that is still in use" in result.failure.reason


CILIUM_VALUES = "/etc/bakery/cilium-values.yaml"


def edit_values(fn: Callable[[dict], None]) -> Callable[[str], str]:
    def change(text: str) -> str:
        doc = yaml.safe_load(text)
        fn(doc)
        return yaml.safe_dump(doc)
    return change


CILIUM_BROKEN = {
    # kubeadm
    "skipPhases typo": (True, lambda o: edit_kubeadm(o, "cp0", "InitConfiguration",
                                                     lambda d: d.update(skipPhases=["addons/kube-proxy"])),
                        "cp0", "kubeadm", "invalid phase name: addons/kube-proxy"),
    "kube-proxy not skipped": (True, lambda o: edit_kubeadm(o, "cp0", "InitConfiguration", lambda d: d.pop("skipPhases")),
                               "cp0", "kubeadm", "kube-proxy"),
    # helm
    "chart missing": (True, lambda o: edit_file(o, "cp0", VALUES, set_value("CNI_ASSETS", "(cilium-9.9.9.tgz)")),
                      "cp0", "cni", "not found"),
    "chart of another version": (True, lambda o: edit_file(o, "cp0", VALUES, lambda t: set_value(
        "PRE_COMMANDS", "('cp /opt/bakery/cilium/cilium-1.20.0.tgz /opt/bakery/cilium/cilium-1.19.6.tgz')")(
        set_value("CNI_ASSETS", "(cilium-1.19.6.tgz)")(t))), "cp0", "cni", "holds the chart cilium 1.20.0"),
    "chart not an archive": (True, lambda o: edit_file(o, "cp0", VALUES, lambda t: set_value(
        "PRE_COMMANDS", "('printf x >/opt/bakery/cilium/junk.tgz')")(set_value("CNI_ASSETS", "(junk.tgz)")(t))),
        "cp0", "cni", "not a chart archive"),
    "release name": (True, lambda o: edit_file(o, "cp0", SCRIPT, lambda t: t.replace(
        "helm upgrade --install cilium ", "helm upgrade --install Cilium_1 ")), "cp0", "cni", "invalid release name"),
    "upgrade without --install": (True, lambda o: edit_file(o, "cp0", SCRIPT, lambda t: t.replace(
        "helm upgrade --install cilium ", "helm upgrade cilium ")), "cp0", "cni", "has no deployed releases"),
    "values file missing": (True, lambda o: edit_file(o, "cp0", SCRIPT, lambda t: t.replace(
        '--values "$CNI_CONFIG"', "--values /etc/bakery/none.yaml")), "cp0", "cni", "no such file"),
    "values against the schema": (True, lambda o: edit_file(o, "cp0", CILIUM_VALUES,
                                                            edit_values(lambda d: d["operator"].update(replicas="one"))),
                                  "cp0", "cni", "values don't meet the specifications"),
    "no namespace": (True, lambda o: edit_file(o, "cp0", SCRIPT, lambda t: t.replace(" --namespace kube-system", "")),
                     "cp0", "cni", "names the namespace"),
    "namespace that does not exist": (True, lambda o: edit_file(o, "cp0", SCRIPT, lambda t: t.replace(
        "--namespace kube-system", "--namespace cilium")), "cp0", "cni", 'namespaces "cilium" not found'),
    "no kubeconfig": (True, lambda o: edit_file(o, "cp0", SCRIPT, lambda t: t.replace(
        '--kubeconfig "$ADMIN_KUBECONFIG"', "--kubeconfig /etc/kubernetes/none.conf")), "cp0", "cni", "refused"),
    # what the release does in the cluster
    "ipam cluster-pool": (False, lambda o: edit_file(o, "cp0", CILIUM_VALUES,
                                                     edit_values(lambda d: d["ipam"].update(mode="cluster-pool"))),
                          "cluster", "cilium", "not within kubeadm's podSubnet"),
    "replacement without the API server's address": (True, lambda o: edit_file(o, "cp0", CILIUM_VALUES, edit_values(
        lambda d: (d.pop("k8sServiceHost"), d.pop("k8sServicePort")))), "cluster", "cilium", "k8sServiceHost"),
    "replacement without skipping kube-proxy's addon": (False, lambda o: edit_file(
        o, "cp0", CILIUM_VALUES, edit_values(lambda d: d.update(kubeProxyReplacement=True))),
        "cluster", "cilium", "kube-proxy runs beside"),
    "two operators on one node": (False, lambda o: edit_file(o, "cp0", CILIUM_VALUES,
                                                             edit_values(lambda d: d["operator"].update(replicas=2))),
                                  "cluster", "cilium", "Pending"),
}


@pytest.mark.parametrize("rule", sorted(CILIUM_BROKEN))
def test_a_broken_cilium_seed_fails_at_its_node_and_step(renders, tmp_path, rule):
    kpr, breaker, node, step, reason = CILIUM_BROKEN[rule]
    out = renders.copy(renders.text(cilium_cluster("v1.20.0", kpr)), tmp_path / "out")
    breaker(out)
    result = play(out)
    assert result.failure is not None, f"{rule}: the rehearsal passed a broken seed"
    f = result.failure
    assert (f.node, f.step) == (node, step) and reason in f.reason, f"{rule}: {f}"


# -- broken seeds: each rule fails at its node and step --------------------------------------

def load_ud(out: Path, node: str) -> dict:
    return yaml.safe_load((out / "nodes" / node / "user-data").read_text())


def save_ud(out: Path, node: str, ud: dict) -> None:
    (out / "nodes" / node / "user-data").write_text("#cloud-config\n" + yaml.safe_dump(ud, sort_keys=False))


def edit_file(out: Path, node: str, path: str, fn: Callable[[str], str]) -> None:
    ud = load_ud(out, node)
    for f in ud["write_files"]:
        if f["path"] == path:
            new = fn(f["content"])
            assert new != f["content"], f"the edit of {path} on {node} changed nothing"
            f["content"] = new
            break
    else:
        raise AssertionError(f"{path} is not in {node}'s seed")
    save_ud(out, node, ud)


def edit_kubeadm(out: Path, node: str, kind: str, fn: Callable[[dict], None]) -> None:
    def change(text: str) -> str:
        docs = list(yaml.safe_load_all(text))
        fn(next(d for d in docs if d["kind"] == kind))
        return yaml.safe_dump_all(docs, sort_keys=False)
    edit_file(out, node, KUBEADM, change)


def registration_arg(doc: dict, name: str, value: str) -> None:
    for a in doc["nodeRegistration"]["kubeletExtraArgs"]:
        if a["name"] == name:
            a["value"] = value


def other_ca() -> tuple[str, str]:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubernetes")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=9))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM).decode(),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()).decode())


def admin_conf_in_group(out: Path, group: str) -> None:
    """The user's admin.conf with its certificate (signed by the cluster CA) in another group."""
    sys.path.insert(0, str(ROOT / "tests" / "standins"))
    import simcluster
    ca = yaml.safe_load((out / "secrets.yaml").read_text())["ca"]
    crt, key = simcluster.issue_client(ca["certificate"].encode(), ca["key"].encode(), "kubernetes-admin", [group])
    cfg = yaml.safe_load((out / "admin.conf").read_text())
    cfg["users"][0]["user"]["client-certificate-data"] = base64.b64encode(crt).decode()
    cfg["users"][0]["user"]["client-key-data"] = base64.b64encode(key).decode()
    (out / "admin.conf").write_text(yaml.safe_dump(cfg))


def swap_ca(out: Path, node: str) -> None:
    crt, key = other_ca()
    ud = load_ud(out, node)
    for f in ud["write_files"]:
        if f["path"] == "/etc/kubernetes/pki/ca.crt":
            f["content"] = crt
        if f["path"] == "/etc/kubernetes/pki/ca.key":
            f["content"] = key
    save_ud(out, node, ud)


def set_value(name: str, value: str) -> Callable[[str], str]:
    return lambda text: re.sub(rf"^{name}=.*$", f"{name}={value}", text, flags=re.M)


BROKEN = {
    # kubeadm's configuration
    "unknown field": ("single", lambda o: edit_kubeadm(o, "solo", "ClusterConfiguration",
                                                        lambda d: d.update(podSubnet="10.0.0.0/8")),
                      "solo", "kubeadm", "strict decoding error"),
    "wrong apiVersion": ("single", lambda o: edit_kubeadm(o, "solo", "InitConfiguration",
                                                           lambda d: d.update(apiVersion="kubeadm.k8s.io/v1beta2")),
                         "solo", "kubeadm", "no kind/apiVersion"),
    "v1beta3 field in v1beta4": ("lab", lambda o: edit_kubeadm(o, "k8s-node1", "JoinConfiguration",
                                                                lambda d: d["nodeRegistration"].update(kubeletExtraArgs={"node-ip": "1.2.3.4"})),
                                 "k8s-node1", "kubeadm", "strict decoding error"),
    "flags beside --config": ("single", lambda o: edit_file(o, "solo", SCRIPT, lambda t: t.replace(
        '--skip-token-print', '--skip-token-print --pod-network-cidr=10.0.0.0/8')), "solo", "kubeadm", "can not mix"),
    "kubernetesVersion": ("single", lambda o: edit_kubeadm(o, "solo", "ClusterConfiguration",
                                                            lambda d: d.update(kubernetesVersion="v1.36.2")),
                          "solo", "kubeadm", "this kubeadm is v1.36.3"),
    "image not in the runtime": ("single", lambda o: edit_kubeadm(o, "solo", "ClusterConfiguration",
                                                                   lambda d: d.update(imageRepository="registry.example.com")),
                                 "solo", "kubeadm", "ImagePull"),
    "CRI socket": ("lab", lambda o: edit_kubeadm(o, "k8s-node2", "JoinConfiguration",
                                                  lambda d: d["nodeRegistration"].update(criSocket="unix:///run/crio/crio.sock")),
                   "k8s-node2", "kubeadm", "CRI"),
    "advertiseAddress": ("single", lambda o: edit_kubeadm(o, "solo", "InitConfiguration",
                                                           lambda d: d["localAPIEndpoint"].update(advertiseAddress="192.168.56.99")),
                         "solo", "kubeadm", "is not an address of this node"),
    "token in another group": ("lab", lambda o: edit_kubeadm(o, "k8s-master", "InitConfiguration",
                                                              lambda d: d["bootstrapTokens"][0].update(groups=["system:bootstrappers:other"])),
                               "k8s-master", "kubeadm", "default-node-token"),
    # the kubelet
    "node-ip": ("lab", lambda o: edit_kubeadm(o, "k8s-node1", "JoinConfiguration",
                                               lambda d: registration_arg(d, "node-ip", "10.0.2.99")),
                "k8s-node1", "kubeadm", "--node-ip 10.0.2.99 is not an address"),
    "no node-ip (the NAT address)": ("lab", lambda o: edit_kubeadm(o, "k8s-node1", "JoinConfiguration",
                                                                    lambda d: d["nodeRegistration"].update(kubeletExtraArgs=[
                                                                        a for a in d["nodeRegistration"]["kubeletExtraArgs"]
                                                                        if a["name"] != "node-ip"])),
                                     "cluster", "nodes", "InternalIP is 10.0.2.15"),
    "cgroup driver": ("single", lambda o: edit_kubeadm(o, "solo", "KubeletConfiguration",
                                                        lambda d: d.update(cgroupDriver="cgroupfs")),
                      "solo", "kubeadm", "cgroup driver"),
    # PKI
    "CA key does not match": ("single", lambda o: edit_file(o, "solo", "/etc/kubernetes/pki/ca.key",
                                                             lambda t: other_ca()[1]), "solo", "kubeadm", "does not match"),
    "front-proxy CA not a CA": ("single", lambda o: not_a_ca(o, "solo", "front-proxy-ca"), "solo", "kubeadm", "not a CA"),
    "control-plane join with another CA": ("ha", lambda o: swap_ca(o, "cp2"), "cp2", "kubeadm", "certificate signed by unknown authority"),
    # join
    "unknown token": ("lab", lambda o: edit_kubeadm(o, "k8s-node1", "JoinConfiguration",
                                                     lambda d: d["discovery"]["bootstrapToken"].update(token="abcdef.0123456789abcdef")),
                      "k8s-node1", "kubeadm", "JWS signature"),
    "expired token": ("lab", lambda o: edit_kubeadm(o, "k8s-master", "InitConfiguration",
                                                     lambda d: d["bootstrapTokens"][0].update(ttl="1ms")),
                      "k8s-node1", "kubeadm", "has expired"),
    "CA hash": ("lab", lambda o: edit_kubeadm(o, "k8s-node2", "JoinConfiguration",
                                               lambda d: d["discovery"]["bootstrapToken"].update(caCertHashes=["sha256:" + "0" * 64])),
                "k8s-node2", "kubeadm", "none of the public keys"),
    "endpoint": ("lab", lambda o: edit_kubeadm(o, "k8s-node1", "JoinConfiguration",
                                                lambda d: d["discovery"]["bootstrapToken"].update(apiServerEndpoint="192.168.56.99:6443")),
                 "k8s-node1", "kubeadm", "192.168.56.99"),
    "etcd members at once": ("ha", lambda o: edit_file(o, "cp3", VALUES, set_value("JOIN_AFTER", "''")),
                             "cp2", "kubeadm", "one member at a time"),
    # kube-vip and the VIP
    "kube-vip with admin.conf during init": ("ha", lambda o: edit_file(o, "cp1", "/etc/kubernetes/manifests/kube-vip.yaml",
                                                                       lambda t: t.replace("/etc/kubernetes/super-admin.conf", "/etc/kubernetes/admin.conf")),
                                             "cp1", "kubeadm", "does not answer"),
    "kube-vip on a NIC the node lacks": ("ha", lambda o: edit_file(o, "cp1", "/etc/kubernetes/manifests/kube-vip.yaml",
                                                                    lambda t: t.replace("value: ens18", "value: eth9")),
                                         "cp1", "kubeadm", "does not answer"),
    "kube-vip without control-plane mode": ("ha", lambda o: edit_file(o, "cp1", "/etc/kubernetes/manifests/kube-vip.yaml",
                                                                       lambda t: t.replace("name: cp_enable\n      value: 'true'",
                                                                                           "name: cp_enable\n      value: 'false'")),
                                            "cp1", "kubeadm", "does not answer"),
    # the API server and Calico
    "objects created twice": ("single", lambda o: (edit_file(o, "solo", SCRIPT, lambda t: t.replace(
        'kube apply --server-side --force-conflicts -f "${CNI_DIR}/${m}"', 'kube create -f "${CNI_DIR}/${m}"')),
        edit_file(o, "solo", VALUES, set_value("CNI_ASSETS", "(v1_crd_projectcalico_org.yaml v1_crd_projectcalico_org.yaml tigera-operator.yaml)"))),
        "solo", "cni", "AlreadyExists"),
    "CRDs missing": ("single", lambda o: edit_file(o, "solo", VALUES, set_value("CNI_ASSETS", "(tigera-operator.yaml)")),
                     "solo", "cni", "installations.operator.tigera.io"),
    "Installation unknown field": ("single", lambda o: edit_file(o, "solo", "/etc/bakery/calico-installation.yaml",
                                                                  lambda t: t.replace("spec:\n", "spec:\n  podCidr: 10.0.0.0/8\n")),
                                   "solo", "cni", "Installation"),
    "IP pool outside podSubnet": ("single", lambda o: edit_file(o, "solo", "/etc/bakery/calico-installation.yaml",
                                                                 lambda t: re.sub(r"cidr: \S+", "cidr: 192.168.0.0/16", t)),
                                  "cluster", "calico", "not within the platform"),
    "autodetection first-found": ("lab", lambda o: edit_file(o, "k8s-master", "/etc/bakery/calico-installation.yaml",
                                                              lambda t: re.sub(r"nodeAddressAutodetectionV4:\n(\s+\S.*\n)+",
                                                                               "nodeAddressAutodetectionV4: {firstFound: true}\n", t)),
                                  "cluster", "calico", "picks 10.0.2.15"),
    # the first boot's own values
    "values file missing": ("single", lambda o: (lambda ud: (ud.update(write_files=[f for f in ud["write_files"] if f["path"] != VALUES]),
                                                             save_ud(o, "solo", ud)))(load_ud(o, "solo")),
                            "solo", "runcmd", "firstboot.env is missing"),
    "node address not on the node": ("single", lambda o: edit_file(o, "solo", VALUES, set_value("NODE_ADDRESS", "192.168.56.77")),
                                     "solo", "node-check", "the node check"),
    "endpoint that never answers": ("lab", lambda o: edit_file(o, "k8s-node1", VALUES, set_value("ENDPOINT_HOST", "192.168.56.99")),
                                    "k8s-node1", "kubeadm", "waiting for the API server 192.168.56.99:6443"),
    # cloud-init and the user's credential
    "owner before users": ("single", lambda o: (lambda ud: (ud["write_files"][0].update(owner="admin:admin"),
                                                            save_ud(o, "solo", ud)))(load_ud(o, "solo")),
                           "solo", "write_files", "does not exist when write_files runs"),
    "admin.conf in another group": ("single", lambda o: admin_conf_in_group(o, "system:authenticated"),
                                    "cluster", "admin.conf", "not authorized"),
    "admin.conf in system:masters": ("single", lambda o: admin_conf_in_group(o, "system:masters"),
                                     "cluster", "admin.conf", "break-glass"),
}


def not_a_ca(out: Path, node: str, name: str) -> None:
    crt, key = leaf_of(out)
    edit_file(out, node, f"/etc/kubernetes/pki/{name}.crt", lambda t: crt)
    edit_file(out, node, f"/etc/kubernetes/pki/{name}.key", lambda t: key)


def leaf_of(out: Path) -> tuple[str, str]:
    """A certificate and key that are not a CA (the bundle's admin client)."""
    cfg = yaml.safe_load((out / "admin.conf").read_text())
    user = cfg["users"][0]["user"]
    return (base64.b64decode(user["client-certificate-data"]).decode(), base64.b64decode(user["client-key-data"]).decode())


@pytest.mark.parametrize("rule", sorted(BROKEN))
def test_a_broken_seed_fails_at_its_node_and_step(renders, tmp_path, rule):
    example, breaker, node, step, reason = BROKEN[rule]
    out = renders.copy(renders.example(example), tmp_path / "out")
    breaker(out)
    result = play(out)
    assert result.failure is not None, f"{rule}: the rehearsal passed a broken seed"
    f = result.failure
    assert (f.node, f.step) == (node, step) and reason in f.reason, f"{rule}: {f}"


# -- the first boot's own resilience, rehearsed ------------------------------------------------

def test_a_failed_init_is_reset_and_tried_again(renders, tmp_path):
    out = renders.example("single")
    result = play(out, faults={"solo": {"kubeadmFail": 1}}, keep=tmp_path)
    assert_clean(result, out)
    assert [c.split()[1] for c in result.calls["solo"] if c.startswith(("kubeadm init", "kubeadm reset"))] == ["init", "reset", "init"]


def test_transient_api_errors_are_retried(renders):
    out = renders.example("single")
    result = play(out, faults={"solo": {"apiDownCalls": 2}})
    assert_clean(result, out)
    assert result.consoles["solo"].count("(transient); next try") == 2


def test_a_failed_kubeadm_past_the_deadline_leaves_one_line(renders, tmp_path):
    out = renders.copy(renders.example("single"), tmp_path / "out")
    edit_file(out, "solo", VALUES, set_value("JOIN_TIMEOUT_SECONDS", "1"))
    result = play(out, faults={"solo": {"kubeadmFail": 100}})
    assert result.failure is not None and (result.failure.node, result.failure.step) == ("solo", "kubeadm")
    assert "kubeadm init exited 1 on attempt 1" in result.failure.reason
    assert len([ln for ln in result.consoles["solo"].splitlines() if ln.startswith("bakery-firstboot: FAILED")]) == 1


def test_an_interrupted_first_boot_resumes_at_its_step_on_the_next_boot(renders, tmp_path):
    """The API is down past the deadline on the first boot; at the next boot systemd starts the
    unit runcmd enabled, which skips what was done and finishes."""
    out = renders.copy(renders.example("single"), tmp_path / "out")
    edit_file(out, "solo", VALUES, set_value("JOIN_TIMEOUT_SECONDS", "1"))
    result = play(out, faults={"solo": {"apiDownCalls": 1, "boots": 2}})
    assert_clean(result, out)
    assert [c.split()[1] for c in result.calls["solo"] if c.startswith(("kubeadm init", "kubeadm reset"))] == ["init"]
    assert "step kubeadm: done on an earlier run" in result.consoles["solo"]


def test_the_cli_prints_a_line_per_node_and_step_and_exits_1_at_the_first_failure(renders, tmp_path):
    out = renders.example("single")
    r = subprocess.run([sys.executable, "tests/rehearse.py", str(out)], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines()[:3] == ["solo: write_files: ok (13 files)", "solo: node-check: ok", "solo: kubeadm: ok"]
    broken = renders.copy(out, tmp_path / "out")
    edit_kubeadm(broken, "solo", "ClusterConfiguration", lambda d: d.update(kubernetesVersion="v1.36.2"))
    r = subprocess.run([sys.executable, "tests/rehearse.py", str(broken)], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 1 and re.search(r"^solo: kubeadm: kubeadm init: \[preflight\] this kubeadm", r.stdout, re.M), r.stdout
    r = subprocess.run([sys.executable, "tests/rehearse.py", str(tmp_path)], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and "not a folder bakery render wrote" in r.stderr
