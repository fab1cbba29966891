"""Issue 6: a highly available control plane with kube-vip."""
import os
import sys

import pytest
import yaml

from conftest import EXAMPLES, ROOT
from test_firstboot import user_data, written

sys.path.insert(0, str(ROOT / "tests"))
from lab.driver import rehearse

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the rehearsal needs root (namespaces, mounts, chroot)")

HA = EXAMPLES / "ha" / "cluster.yaml"
MANIFEST = "/etc/kubernetes/manifests/kube-vip.yaml"
AFTER = "/etc/bakery/kube-vip.admin.yaml"


@pytest.fixture(scope="module")
def ha(renders):
    return renders.example("ha"), yaml.safe_load(HA.read_text())


def nodes(data, role=None):
    return [n for n in data["spec"]["nodes"] if role is None or n["role"] == role]


def kubeconfig_path(pod: dict) -> str:
    (vol,) = [v for v in pod["spec"]["volumes"] if v["name"] == "kubeconfig"]
    return vol["hostPath"]["path"]


def env(pod: dict) -> dict:
    return {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}


def test_example_is_three_plus_three_with_a_vip(ha):
    _, data = ha
    assert len(nodes(data, "control-plane")) == 3 and len(nodes(data, "worker")) == 3
    assert data["spec"]["controlPlane"]["vip"]


def test_every_control_plane_gets_kube_vip_and_workers_do_not(ha):
    out, data = ha
    vip = data["spec"]["controlPlane"]["vip"]
    first, *others = nodes(data, "control-plane")
    for node in nodes(data, "control-plane"):
        files = written(user_data(out, node["name"]))
        pod = yaml.safe_load(files[MANIFEST]["content"])
        assert files[MANIFEST]["permissions"] == "0600"
        e = env(pod)
        assert e["address"] == vip and e["vip_arp"] == "true" and e["vip_leaderelection"] == "true"
        assert e["cp_enable"] == "true" and e["port"] == "6443"
        iface = node.get("interface") or data["spec"]["network"].get("nodeInterface", "enp0s8")
        assert e["vip_interface"] == iface
        assert pod["spec"]["containers"][0]["image"].startswith("ghcr.io/kube-vip/kube-vip:v")
        assert pod["spec"]["hostNetwork"] is True
    # the init node starts with super-admin.conf and switches to admin.conf after init
    files = written(user_data(out, first["name"]))
    assert kubeconfig_path(yaml.safe_load(files[MANIFEST]["content"])) == "/etc/kubernetes/super-admin.conf"
    assert kubeconfig_path(yaml.safe_load(files[AFTER]["content"])) == "/etc/kubernetes/admin.conf"
    # joined control planes use admin.conf from the start (super-admin.conf is init-only)
    for node in others:
        files = written(user_data(out, node["name"]))
        assert kubeconfig_path(yaml.safe_load(files[MANIFEST]["content"])) == "/etc/kubernetes/admin.conf"
        assert AFTER not in files
    for node in nodes(data, "worker"):
        files = written(user_data(out, node["name"]))
        assert MANIFEST not in files and AFTER not in files


def test_every_env_name_is_one_kube_vip_reads(ha):
    """kube-vip ignores an environment variable it does not know (vip_cidr was one): every name
    must be one of the constants of kube-vip's config_envvar.go at the pinned tag."""
    import json

    from bakery import versions

    from conftest import ROOT

    spec = json.loads((ROOT / "tests/data/specs/kube-vip-env-v1.0.0.json").read_text())
    assert spec["source"]["tag"] == versions.KUBE_VIP_VERSION
    known = set(spec["env"])
    out, data = ha
    for node in nodes(data, "control-plane"):
        files = written(user_data(out, node["name"]))
        for path in (MANIFEST, AFTER):
            if path in files:
                names = [e["name"] for e in yaml.safe_load(files[path]["content"])["spec"]["containers"][0]["env"]]
                assert set(names) <= known, set(names) - known
                assert env(yaml.safe_load(files[path]["content"]))["vip_subnet"] == "32"


def test_kube_vip_pod_validates_against_the_kubernetes_schema(ha):
    kv = pytest.importorskip("kubernetes_validate")
    out, data = ha
    minor = ".".join(data["spec"]["kubernetes"]["version"].split(".")[:2])
    version = max(v for v in kv.utils.all_versions() if v.startswith(minor + "."))
    for node in nodes(data, "control-plane"):
        for path in (MANIFEST, AFTER):
            files = written(user_data(out, node["name"]))
            if path in files:
                kv.validate(yaml.safe_load(files[path]["content"]), version, strict=True)
    # the validator can fail
    bad = yaml.safe_load(written(user_data(out, nodes(data, "control-plane")[0]["name"]))[MANIFEST]["content"])
    bad["spec"]["containers"][0]["vip_address"] = "x"
    with pytest.raises(kv.ValidationError):
        kv.validate(bad, version, strict=True)


def test_endpoint_and_sans_use_the_vip(ha):
    out, data = ha
    vip = data["spec"]["controlPlane"]["vip"]
    first = nodes(data, "control-plane")[0]["name"]
    docs = list(yaml.safe_load_all(written(user_data(out, first))["/etc/bakery/kubeadm.yaml"]["content"]))
    cc = next(d for d in docs if d["kind"] == "ClusterConfiguration")
    assert cc["controlPlaneEndpoint"] == f"{vip}:6443"
    assert vip in cc["apiServer"]["certSANs"]


def test_join_preflight_waives_only_the_manifests_folder_on_control_planes(ha):
    out, data = ha
    for node in nodes(data)[1:]:
        docs = list(yaml.safe_load_all(written(user_data(out, node["name"]))["/etc/bakery/kubeadm.yaml"]["content"]))
        join = next(d for d in docs if d["kind"] == "JoinConfiguration")
        ignores = join["nodeRegistration"].get("ignorePreflightErrors", [])
        if node["role"] == "control-plane":
            assert ignores == ["DirAvailable--etc-kubernetes-manifests"]
            assert join["discovery"]["bootstrapToken"]["apiServerEndpoint"].startswith(data["spec"]["controlPlane"]["vip"])
        else:
            assert ignores == []


def test_kube_vip_image_is_baked(ha):
    out, data = ha
    manifest_pod = yaml.safe_load(written(user_data(out, nodes(data, "control-plane")[0]["name"]))[MANIFEST]["content"])
    image = manifest_pod["spec"]["containers"][0]["image"]
    from bakery.plan import image_plan
    from bakery.spec.pipeline import load_cluster

    cluster, _ = load_cluster(str(HA))
    assert image in image_plan(cluster).images
    packer_text = "\n".join(p.read_text() for p in (out / "packer").rglob("*") if p.is_file())
    assert image in packer_text


@needs_root
def test_init_script_switches_kube_vip_after_init(ha, tmp_path):
    """Rehearsed (tests/lab): kube-vip holds the VIP with super-admin.conf while kubeadm init
    needs it, then the script moves it to admin.conf, and the VIP still answers."""
    out, data = ha
    first = nodes(data, "control-plane")[0]["name"]
    result = rehearse(out, keep=tmp_path, say=lambda line: None)
    assert result.ok, result.failure
    pod = yaml.safe_load((result.root(first) / "etc/kubernetes/manifests/kube-vip.yaml").read_text())
    assert kubeconfig_path(pod) == "/etc/kubernetes/admin.conf"
    assert "switching from super-admin.conf to admin.conf" in result.consoles[first]
    assert result.state["nodes"][first]["staticPods"]["kube-vip"]["groups"] == ["kubeadm:cluster-admins"]


@needs_root
def test_a_retried_control_plane_join_keeps_kube_vip(ha, tmp_path):
    """kubeadm reset empties /etc/kubernetes/manifests: the retry must put kube-vip back."""
    out, data = ha
    second = nodes(data, "control-plane")[1]["name"]
    files = written(user_data(out, second))
    result = rehearse(out, keep=tmp_path, faults={second: {"kubeadmFail": 1}}, say=lambda line: None)
    assert result.ok, result.failure
    assert [c.split()[1] for c in result.calls[second] if c.startswith(("kubeadm join", "kubeadm reset"))] == \
        ["join", "reset", "join"]
    assert (result.root(second) / "etc/kubernetes/manifests/kube-vip.yaml").read_text() == files[MANIFEST]["content"]
