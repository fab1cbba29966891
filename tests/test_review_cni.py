"""Review findings on the pod network plugin (issue 20): each test shows one defect."""
from __future__ import annotations

import pytest
import yaml

from conftest import EXAMPLES, run_bakery

HA = EXAMPLES / "ha" / "cluster.yaml"


def _ha(folder, *, initialized: bool, cni: dict | None = None):
    doc = yaml.safe_load(HA.read_text())
    doc["spec"]["bootstrap"]["initialized"] = initialized
    if cni is not None:
        doc["spec"]["cni"] = cni
    folder.mkdir(exist_ok=True)
    f = folder / "cluster.yaml"
    f.write_text(yaml.safe_dump(doc, sort_keys=False))
    return f


def test_switching_the_cni_of_a_running_cluster_is_refused(tmp_path):
    """bakery installs the plugin only in the init node's first boot. Once the cluster runs
    (spec.bootstrap.initialized), a new spec.cni reaches no node: the running cluster keeps its
    plugin, while the image pre-pulls and the node check expects the new one's files, and
    `bakery explain` names it. The render must say so rather than succeed silently."""
    out = tmp_path / "out"
    r = run_bakery("render", _ha(tmp_path / "a", initialized=False), "--out", out)
    assert r.returncode == 0, r.stderr
    before = (out / "manifest.json").read_bytes()
    switched = _ha(tmp_path / "b", initialized=True, cni={"flannel": {}})
    r = run_bakery("render", switched, "--out", out)
    assert r.returncode == 2 and "error[cni-changed]" in r.stderr, (r.returncode, r.stderr)
    assert "calico" in r.stderr.lower() and "flannel" in r.stderr
    assert (out / "manifest.json").read_bytes() == before
    # the same plugin on the running cluster renders
    same = _ha(tmp_path / "c", initialized=True)
    assert run_bakery("render", same, "--out", out).returncode == 0


def test_a_cni_switch_before_the_cluster_runs_warns(tmp_path):
    """Not initialized: the init node may not have booted yet, so the switch is allowed, but if
    it has, its plugin stays; the render warns."""
    out = tmp_path / "out"
    assert run_bakery("render", _ha(tmp_path / "a", initialized=False), "--out", out).returncode == 0
    r = run_bakery("render", _ha(tmp_path / "b", initialized=False, cni={"flannel": {}}), "--out", out)
    assert r.returncode == 0, r.stderr
    assert "warning[cni-changed]" in r.stderr, r.stderr


def test_the_kustomize_stand_in_builds_what_kubectl_kustomize_builds(tmp_path):
    """The stand-in against the real thing where kubectl is installed: the same objects for
    bakery's kustomization and each release's manifest (real kustomize also sorts them: its
    legacy order, Namespace and ServiceAccount first; kubectl apply sends them in that order)."""
    import json
    import shutil
    import subprocess
    import sys

    from bakery import versions
    from bakery.cni import flannel
    from bakery.spec.pipeline import load_cluster

    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    sys.path.insert(0, str(EXAMPLES.parent / "tests" / "standins"))
    import kustomize
    from lab.image import synthesize_cni

    for release in sorted(versions.FLANNEL):
        for backend in ("vxlan", "host-gw"):
            doc = yaml.safe_load((EXAMPLES / "lab" / "cluster.yaml").read_text())
            doc["spec"]["cni"] = {"flannel": {"version": release, "backend": backend}}
            f = tmp_path / "cluster.yaml"
            f.write_text(yaml.safe_dump(doc, sort_keys=False))
            folder = tmp_path / f"{release}-{backend}"
            synthesize_cni("flannel", release, folder, [flannel.MANIFEST])
            (folder / "SHA256SUMS").unlink()
            (folder / "kustomization.yaml").write_text(flannel.config(load_cluster(str(f))[0]))
            r = subprocess.run([kubectl, "kustomize", str(folder)], capture_output=True, text=True, timeout=120)
            assert r.returncode == 0, r.stderr
            real = sorted(json.dumps(o, sort_keys=True) for o in yaml.safe_load_all(r.stdout) if o)
            mine = sorted(json.dumps(o, sort_keys=True) for o in kustomize.build(folder))
            assert mine == real, (release, backend)


def test_yaml_1_1_short_booleans_are_quoted():
    """Go's yaml.v2 (kustomize, kubectl) reads a plain y/Y/n/N as a bool; PyYAML leaves them plain."""
    import yaml

    from bakery.templating import dump_yaml

    text = dump_yaml({"target": {"namespace": "y", "name": "N"}, "other": "x"})
    assert "namespace: 'y'" in text and "name: 'N'" in text and "other: x" in text
    assert yaml.safe_load(text) == {"target": {"namespace": "y", "name": "N"}, "other": "x"}


def test_another_release_or_setting_on_a_running_cluster_warns(tmp_path):
    """The same plugin with another release or setting (Cilium's kubeProxyReplacement) on a
    running cluster: bakery does not change the running plugin, the render says so; the
    manifest records what the init installs."""
    import json

    out = tmp_path / "out"
    first = _ha(tmp_path / "a", initialized=False, cni={"cilium": {"version": "v1.20.0"}})
    assert run_bakery("render", first, "--out", out).returncode == 0
    assert json.loads((out / "manifest.json").read_text())["cni"] == {
        "plugin": "cilium", "version": "v1.20.0", "kubeProxyReplacement": False}
    again = _ha(tmp_path / "b", initialized=True, cni={"cilium": {"version": "v1.20.0", "kubeProxyReplacement": True}})
    r = run_bakery("render", again, "--out", out)
    assert r.returncode == 0, r.stderr
    assert "warning[cni-changed]" in r.stderr and "kubeProxyReplacement False -> True" in r.stderr, r.stderr
    # unchanged: no warning
    r = run_bakery("render", again, "--out", out)
    assert r.returncode == 0 and "cni-changed" not in r.stderr, r.stderr
