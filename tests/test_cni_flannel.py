"""flannel as the pod network plugin (issue 20): the kustomization bakery writes, applied by the
kustomize stand-in to the release's manifest (tests/data/specs/flannel-manifests.json), the
stand-in's own rules, the rehearsal of flannel clusters, and bad input."""
from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest
import yaml

from bakery import versions

from conftest import EXAMPLES, ROOT, bakery_forked

sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "standins"))
import kustomize
from lab.driver import rehearse
from lab.image import synthesize_cni

CONFIG = "/etc/bakery/flannel-kustomization.yaml"
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="the rehearsal needs root (namespaces, mounts, chroot)")


def flannel_text(example: str = "single", **cni) -> str:
    doc = yaml.safe_load((EXAMPLES / example / "cluster.yaml").read_text())
    doc["spec"]["cni"] = {"flannel": cni}
    return yaml.safe_dump(doc, sort_keys=False)


def seed_file(out: Path, node: str, path: str) -> str:
    ud = yaml.safe_load((out / "nodes" / node / "user-data").read_text())
    (f,) = [f for f in ud["write_files"] if f["path"] == path]
    return f["content"]


def built(out: Path, node: str, release: str, tmp_path: Path) -> list[dict]:
    """What `kubectl apply -k` sends: the release's manifest through the seed's kustomization."""
    folder = tmp_path / "k"
    synthesize_cni("flannel", release, folder, ["kube-flannel.yml"])
    (folder / "SHA256SUMS").unlink()
    (folder / "kustomization.yaml").write_text(seed_file(out, node, CONFIG))
    return kustomize.build(folder)


@pytest.mark.parametrize("release", sorted(versions.FLANNEL))
@pytest.mark.parametrize("backend", ["vxlan", "host-gw"])
def test_the_kustomization_sets_the_network_and_pins_flanneld(renders, tmp_path, release, backend):
    out = renders.text(flannel_text(version=release, backend=backend))
    objs = {(o["kind"], o["metadata"]["name"]): o for o in built(out, "solo", release, tmp_path)}
    spec = json.loads((ROOT / "tests/data/specs/flannel-manifests.json").read_text())["releases"][release]
    assert sorted(objs) == sorted((k, n) for _, k, _, n in spec["objects"])  # nothing added, nothing lost
    conf = json.loads(objs[("ConfigMap", "kube-flannel-cfg")]["data"]["net-conf.json"])
    pod_cidr = yaml.safe_load(flannel_text())["spec"]["network"]["podCidr"]
    assert conf == {"Network": pod_cidr, "EnableNFTables": False, "Backend": {"Type": backend}}
    (c,) = objs[("DaemonSet", "kube-flannel-ds")]["spec"]["template"]["spec"]["containers"]
    assert c["args"][:len(spec["containers"][0]["args"])] == spec["containers"][0]["args"]  # upstream's kept
    assert c["args"][-1] == "--iface=$(NODE_IP)"
    assert {"name": "NODE_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}} in c["env"]
    # images: what the bake pre-pulls is what the pods run
    plan_images = (out / "packer/files/opt/bakery/node-check.json").read_text()
    pod = objs[("DaemonSet", "kube-flannel-ds")]["spec"]["template"]["spec"]
    for image in [x["image"] for x in pod["initContainers"] + pod["containers"]]:
        assert f'"{image}"' in plan_images


# -- the kustomize stand-in's rules, each broken once ----------------------------------------

def _folder(tmp_path: Path, kustomization: dict | str, files: dict[str, str] | None = None) -> Path:
    folder = tmp_path / "k"
    folder.mkdir(exist_ok=True)
    for name, text in (files or {"m.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: n}\n"
                                 "data: {a: '1'}\n"}).items():
        (folder / name).write_text(text)
    (folder / "kustomization.yaml").write_text(kustomization if isinstance(kustomization, str)
                                               else yaml.safe_dump(kustomization))
    return folder


TARGET = {"version": "v1", "kind": "ConfigMap", "name": "c", "namespace": "n"}


def test_the_kustomize_stand_in_applies_a_good_patch(tmp_path):
    k = {"resources": ["m.yaml"], "patches": [{"target": TARGET, "patch": json.dumps(
        [{"op": "test", "path": "/data/a", "value": "1"}, {"op": "replace", "path": "/data/a", "value": "2"},
         {"op": "add", "path": "/data/b", "value": "3"}])}]}
    (obj,) = kustomize.build(_folder(tmp_path, k))
    assert obj["data"] == {"a": "2", "b": "3"}


@pytest.mark.parametrize("case,kustomization,files,message", [
    ("no kustomization", None, None, "unable to find one of"),
    ("unknown field", {"resources": ["m.yaml"], "namePrefix": "x-"}, None, "does not support"),
    ("resource outside", {"resources": ["../m.yaml"]}, None, "is not in or below"),
    ("missing resource", {"resources": ["gone.yaml"]}, None, "must resolve to a file"),
    ("target selects nothing", {"resources": ["m.yaml"], "patches": [
        {"target": {**TARGET, "name": "other"}, "patch": "[]"}]}, None, "no resource matches"),
    ("test fails", {"resources": ["m.yaml"], "patches": [
        {"target": TARGET, "patch": '[{"op": "test", "path": "/data/a", "value": "9"}]'}]}, None, "testing value"),
    ("replace a missing path", {"resources": ["m.yaml"], "patches": [
        {"target": TARGET, "patch": '[{"op": "replace", "path": "/data/zz", "value": "9"}]'}]}, None, "does not exist"),
    ("append to a missing list", {"resources": ["m.yaml"], "patches": [
        {"target": TARGET, "patch": '[{"op": "add", "path": "/spec/args/-", "value": "x"}]'}]}, None, "unable to find"),
    ("strategic merge patch", {"resources": ["m.yaml"], "patches": [
        {"target": TARGET, "patch": "data: {a: '2'}"}]}, None, "JSON 6902 patches only"),
])
def test_the_kustomize_stand_in_refuses(tmp_path, case, kustomization, files, message):
    folder = _folder(tmp_path, kustomization or {}, files)
    if kustomization is None:
        (folder / "kustomization.yaml").unlink()
    with pytest.raises(kustomize.KustomizeError, match=message):
        kustomize.build(folder)


# -- the rehearsal ----------------------------------------------------------------------------

@root_only
@pytest.mark.parametrize("example,backend", [("single", "vxlan"), ("lab", "host-gw"), ("ha", "vxlan")])
def test_flannel_clusters_rehearse(renders, example, backend):
    out = renders.text(flannel_text(example, backend=backend))
    result = rehearse(out, say=lambda line: None)
    assert result.ok, f"{result.failure}\n" + "\n".join(result.lines[-8:])
    assert "cluster: flannel: ok" in result.lines
    assert "cluster: calico: ok" not in result.lines


def _edit_seed(out: Path, node: str, path: str, change) -> None:
    p = out / "nodes" / node / "user-data"
    text = p.read_text()
    head, _, rest = text.partition("\n")
    ud = yaml.safe_load(text)
    for f in ud["write_files"]:
        if f["path"] == path:
            f["content"] = change(f["content"])
    p.write_text(head + "\n" + yaml.safe_dump(ud, sort_keys=False))


def _drop_iface(text: str) -> str:
    doc = yaml.safe_load(text)
    ops = json.loads(doc["patches"][1]["patch"])
    doc["patches"][1]["patch"] = json.dumps([o for o in ops if "args" not in o["path"]])
    return yaml.safe_dump(doc)


def _network(text: str) -> str:
    doc = yaml.safe_load(text)
    ops = json.loads(doc["patches"][0]["patch"])
    ops[0]["value"] = re.sub(r'"Network": "[^"]+"', '"Network": "10.96.0.0/24"', ops[0]["value"])
    doc["patches"][0]["patch"] = json.dumps(ops)
    return yaml.safe_dump(doc)


@root_only
@pytest.mark.parametrize("case,example,change,reason", [
    ("flanneld on the default route", "lab", _drop_iface, "picks 10.0.2.15"),
    ("Network outside podSubnet", "single", _network, "doesn't contain"),
])
def test_a_broken_flannel_seed_fails(renders, tmp_path, case, example, change, reason):
    out = renders.copy(renders.text(flannel_text(example)), tmp_path / "out")
    init = "solo" if example == "single" else "k8s-master"
    _edit_seed(out, init, CONFIG, change)
    result = rehearse(out, say=lambda line: None)
    assert result.failure is not None, f"{case}: the rehearsal passed a broken seed"
    assert (result.failure.node, result.failure.step) == ("cluster", "flannel") and reason in result.failure.reason, \
        result.failure


# -- bad input --------------------------------------------------------------------------------

def _line(text: str, needle: str) -> int:
    return next(i for i, ln in enumerate(text.splitlines(), 1) if needle in ln)


@pytest.mark.parametrize("cni,needle,check", [
    ("    calico: {}\n    flannel: {}\n", "flannel: {}", "cni-choice"),
    ("    flannel: {version: v0.1.0}\n", "flannel: {version: v0.1.0}", "flannel-version"),
    ("    cilium: {version: v1.18.12}\n", "cilium: {version: v1.18.12}", "cilium-version"),
    ("    cilium: {version: v1.2.3}\n", "cilium: {version: v1.2.3}", "cilium-version"),
])
def test_cni_choice_and_versions_refused_at_the_line(tmp_path, cni, needle, check):
    text = re.sub(r"  cni:\n(    .*\n|      .*\n)+", "  cni:\n" + cni,
                  (EXAMPLES / "single" / "cluster.yaml").read_text(), count=1)
    path = tmp_path / "cluster.yaml"
    path.write_text(text)
    r = bakery_forked("validate", path, cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert re.search(rf"{re.escape(str(path))}:{_line(text, needle)}:\d+: error\[{check}\]: ", r.stderr), r.stderr
