"""Issue 6: a highly available control plane with kube-vip."""
import contextlib

import pytest
import yaml

from conftest import EXAMPLES
from test_firstboot import calls, run_script, stage_script, user_data, written

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


def test_init_script_switches_kube_vip_after_init(ha, tmp_path):
    out, data = ha
    first = nodes(data, "control-plane")[0]["name"]
    files = written(user_data(out, first))
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "kube-vip.yaml").write_text(files[MANIFEST]["content"])
    after = tmp_path / "kube-vip.admin.yaml"
    after.write_text(files[AFTER]["content"])
    script = stage_script(files["/usr/local/lib/bakery/firstboot.sh"]["content"],
                          files["/etc/bakery/firstboot.env"]["content"], tmp_path,
                          KUBE_VIP_MANIFEST=manifests / "kube-vip.yaml", KUBE_VIP_AFTER_INIT=after)
    r = run_script(script, tmp_path)
    assert r.returncode == 0, r.stderr
    assert calls(tmp_path)[0].startswith("kubeadm init")
    assert kubeconfig_path(yaml.safe_load((manifests / "kube-vip.yaml").read_text())) == "/etc/kubernetes/admin.conf"
    assert "switching from super-admin.conf to admin.conf" in r.stderr


def test_a_retried_control_plane_join_keeps_kube_vip(ha, tmp_path):
    """kubeadm reset empties /etc/kubernetes/manifests: the retry must put kube-vip back."""
    import socket
    import threading

    out, data = ha
    second = nodes(data, "control-plane")[1]["name"]
    files = written(user_data(out, second))
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    port = srv.getsockname()[1]
    stop = threading.Event()

    def serve():
        srv.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                srv.accept()[0].close()
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "kube-vip.yaml").write_text(files[MANIFEST]["content"])
    try:
        script = stage_script(files["/usr/local/lib/bakery/firstboot.sh"]["content"],
                              files["/etc/bakery/firstboot.env"]["content"], tmp_path,
                              KUBE_VIP_MANIFEST=manifests / "kube-vip.yaml", ENDPOINT_HOST="127.0.0.1",
                              ENDPOINT_PORT=str(port), JOIN_TIMEOUT_SECONDS="300")
        # a kubeadm whose first join fails and whose reset wipes the manifests, like the real one
        (tmp_path / "bin/kubeadm").write_text(
            f'#!/bin/sh\necho "kubeadm $*" >> "{tmp_path}/calls"\n'
            f'case "$1" in\n  join) [ -e "{tmp_path}/joined-once" ] && exit 0; touch "{tmp_path}/joined-once"; exit 1 ;;\n'
            f'  reset) rm -rf "{manifests}"/* ;;\nesac\nexit 0\n')
        r = run_script(script, tmp_path)
    finally:
        stop.set()
        t.join()
        srv.close()
    assert r.returncode == 0, r.stderr
    assert [c.split()[1] for c in calls(tmp_path) if c.startswith("kubeadm")] == ["join", "reset", "join"]
    assert (manifests / "kube-vip.yaml").read_text() == files[MANIFEST]["content"]
