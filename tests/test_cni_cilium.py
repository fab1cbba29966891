"""spec.cni.cilium (issue 20), judged by the consumers of what bakery writes for it:

- helm: the values file against the chart's own values.schema.json of each catalog release
  (tests/data/specs/cilium-values-schema-<version>.json), with unknown keys refused (helm would
  pass them: the schema allows any key; a value the chart does not know is a mistake);
- the catalog (bakery/versions.py) against the facts derived from the published charts
  (tests/data/specs/cilium-charts.json): chart digest, charts commit, images, tested minors;
- kubeadm: the init node's InitConfiguration (skipPhases) against the vendored v1beta4 field tree;
- the bake: shellcheck, the chart's published digest checked at bake time, helm fetched and
  verified like the other release downloads, kube-proxy's image left out exactly when Cilium
  replaces it (run against the kubeadm stand-in's image list);
- the node check: what it expects of a Cilium image (helm's version, no kube-proxy image).

The first boot itself (helm upgrade --install against the helm stand-in) is rehearsed in
tests/test_rehearse.py.
"""
from __future__ import annotations

import copy
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from bakery import versions
from bakery.guest import nodecheck as nc

from clusters import make_cluster
from conftest import ROOT, need

SPECS = ROOT / "tests" / "data" / "specs"
CHARTS = json.loads((SPECS / "cilium-charts.json").read_text())["releases"]
VALUES = "/etc/bakery/cilium-values.yaml"
KUBEADM = "/etc/bakery/kubeadm.yaml"


def newest_minor(release: str) -> str:
    return max((m for m in versions.KUBERNETES if versions.CILIUM[release].supports(m)), key=versions.parse_version)


def containerd_for(minor: str) -> str:
    table = versions.KUBERNETES[minor].containerd_min
    return table[max(table, key=versions.parse_version)]


def cilium_text(release: str = "v1.20.0", kpr: bool = False, nodes: int = 3, extra: str = "") -> str:
    minor = newest_minor(release)
    return make_cluster(nodes, name="cil", k8s=versions.KUBERNETES[minor].newest_patch, containerd=containerd_for(minor),
                        builders=("qemu",), extra_spec=extra,
                        cni=f"{{cilium: {{version: {release}, kubeProxyReplacement: {str(kpr).lower()}}}}}")


def seed_file(out: Path, node: str, path: str) -> str:
    ud = yaml.safe_load((out / "nodes" / node / "user-data").read_text())
    return next(f["content"] for f in ud["write_files"] if f["path"] == path)


def init_node(out: Path) -> str:
    for d in sorted((out / "nodes").iterdir()):
        if "InitConfiguration" in seed_file(out, d.name, KUBEADM):
            return d.name
    raise AssertionError("no init node")


def strict(schema: dict) -> dict:
    """The chart's schema with unknown keys refused wherever it lists an object's properties."""
    s = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if node.get("type") in ("object", ["object"]) and "properties" in node:
                node.setdefault("additionalProperties", False)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
    walk(s)
    return s


def schema_errors(values: dict, release: str) -> list[str]:
    schema = json.loads((SPECS / f"cilium-values-schema-{release.lstrip('v')}.json").read_text())
    validator = jsonschema.Draft7Validator(strict(schema))
    return [f"{'.'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in validator.iter_errors(values)]


# -- the values, against each release's chart ------------------------------------------------

@pytest.mark.parametrize("kpr", [False, True])
@pytest.mark.parametrize("release", sorted(versions.CILIUM))
def test_values_validate_against_the_chart_schema_of_each_release(renders, release, kpr):
    out = renders.text(cilium_text(release, kpr))
    values = yaml.safe_load(seed_file(out, init_node(out), VALUES))
    assert schema_errors(values, release) == []
    cluster = yaml.safe_load(cilium_text(release, kpr))["spec"]
    first = cluster["nodes"][0]["address"]
    # what the chart does with them: pod addresses from each node's podCIDR (kubeadm podSubnet),
    # the API server at the endpoint kubeadm was given, one operator replica per node at most
    assert values["ipam"] == {"mode": "kubernetes"}
    assert values["kubeProxyReplacement"] is kpr
    assert (values["k8sServiceHost"], values["k8sServicePort"]) == (first, 6443)
    assert values["operator"]["replicas"] == 2


def test_a_single_node_runs_one_operator_and_a_vip_is_the_service_host(renders):
    out = renders.text(cilium_text(nodes=1))
    assert yaml.safe_load(seed_file(out, init_node(out), VALUES))["operator"] == {"replicas": 1}
    out = renders.text(cilium_text(extra="  controlPlane: {vip: 172.16.0.250}\n"))
    values = yaml.safe_load(seed_file(out, init_node(out), VALUES))
    assert (values["k8sServiceHost"], values["k8sServicePort"]) == ("172.16.0.250", 6443)


@pytest.mark.parametrize("release, values", [
    ("v1.20.0", {"ipam": {"mode": 1}}),                          # a number where the chart wants a string
    ("v1.20.0", {"operator": {"replicas": "2"}}),                # a string where it wants an integer
    ("v1.20.0", {"ipam": {"modes": "kubernetes"}}),              # a key the chart does not know
    ("v1.18.12", {"devices": "enp0s8"}),                         # 1.18 has `devices` only as a comment
    ("v1.19.6", {"k8sServicePort": [6443]}),
])
def test_the_schema_check_refuses_a_wrong_value(release, values):
    assert schema_errors(values, release)


def test_the_vendored_schemas_are_the_charts():
    for release, facts in CHARTS.items():
        data = (SPECS / f"cilium-values-schema-{release}.json").read_bytes()
        assert hashlib.sha256(data).hexdigest() == facts["valuesSchemaSha256"], release


# -- the catalog, against the published charts ----------------------------------------------

@pytest.mark.parametrize("release", sorted(versions.CILIUM))
def test_the_catalog_matches_the_published_chart(release):
    r, facts = versions.CILIUM[release], CHARTS[release.lstrip("v")]
    assert r.chart_sha256 == facts["chartSha256"]
    assert r.charts_commit == facts["chartsCommit"]
    assert r.chart_url == f"https://raw.githubusercontent.com/cilium/charts/{facts['chartsCommit']}/cilium-{release[1:]}.tgz"
    assert list(r.images) == facts["images"]
    minors = facts["kubernetesMinors"]
    assert r.kubernetes == (minors[0], minors[-1])
    assert all(r.supports(m) for m in minors)


# -- kubeadm --------------------------------------------------------------------------------

@pytest.mark.parametrize("kpr", [False, True])
def test_kubeadm_skips_the_kube_proxy_addon_exactly_when_cilium_replaces_it(renders, kpr):
    sys.path.insert(0, str(ROOT / "tests" / "standins"))
    import contracts
    out = renders.text(cilium_text(kpr=kpr))
    for node in sorted(p.name for p in (out / "nodes").iterdir()):
        for doc in yaml.safe_load_all(seed_file(out, node, KUBEADM)):
            assert contracts.validate_kube_doc(doc) == [], (node, doc["kind"])
            if doc["kind"] == "InitConfiguration":
                assert doc.get("skipPhases") == (["addon/kube-proxy"] if kpr else None)
            else:
                assert "skipPhases" not in doc  # join has no addon phase


# -- the bake ---------------------------------------------------------------------------------

def scripts_of(out: Path) -> Path:
    return out / "packer" / "scripts"


@pytest.mark.parametrize("kpr", [False, True])
def test_bake_scripts_pass_shellcheck(renders, kpr):
    shellcheck = need("shellcheck")
    scripts = sorted(scripts_of(renders.text(cilium_text(kpr=kpr))).glob("*.sh"))
    r = subprocess.run([shellcheck, "--shell=bash", "--severity=style", *map(str, scripts)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_chart_is_checked_against_its_published_digest_at_bake_time(renders, tmp_path):
    text = (scripts_of(renders.text(cilium_text("v1.19.6"))) / "50-images.sh").read_text()
    fetched = re.findall(r"^fetch (\S+) (\S+)$", text, re.M)
    assert fetched == [(versions.CILIUM["v1.19.6"].chart_url, "/opt/bakery/cilium/cilium-1.19.6.tgz")]
    check = re.search(r"^  (printf .* \| sha256sum --quiet -c -)$", text, re.M)
    assert check is not None and CHARTS["1.19.6"]["chartSha256"] in check.group(1)
    # the script's own line, run: a file with other bytes fails the bake
    (tmp_path / "cilium-1.19.6.tgz").write_bytes(b"not the chart")
    r = subprocess.run(["bash", "-euo", "pipefail", "-c", check.group(1)], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode != 0
    # and checks the digest it names against the file
    good = check.group(1).replace(CHARTS["1.19.6"]["chartSha256"], hashlib.sha256(b"not the chart").hexdigest())
    assert subprocess.run(["bash", "-euo", "pipefail", "-c", good], cwd=tmp_path).returncode == 0


def test_helm_is_fetched_and_verified_like_the_other_release_downloads(renders):
    text = (scripts_of(renders.text(cilium_text())) / "50-images.sh").read_text()
    pairs = re.findall(r"fetch_verified (\S+) (\S+)\)", text)
    tag = versions.HELM_VERSION
    assert pairs == [(f"https://get.helm.sh/helm-{tag}-linux-amd64.tar.gz",
                      f"https://get.helm.sh/helm-{tag}-linux-amd64.tar.gz.sha256sum")]
    assert "linux-amd64/helm" in text and f"grep -qx {tag}" in text
    env = (renders.text(cilium_text()) / "packer/files/opt/bakery/versions.env").read_text()
    assert f"HELM_VERSION={tag}\n" in env


def test_a_downloads_mirror_serves_the_chart(renders):
    extra = "  mirrors: {downloads: 'https://artifacts.example.com/github'}\n"
    text = (scripts_of(renders.text(cilium_text("v1.20.0", extra=extra))) / "50-images.sh").read_text()
    commit = CHARTS["1.20.0"]["chartsCommit"]
    assert f"fetch https://artifacts.example.com/github/cilium/charts/raw/{commit}/cilium-1.20.0.tgz " in text


def fake_kubeadm(tmp_path: Path, version: str) -> Path:
    """A `kubeadm` on PATH that lists what the stand-in's table says kubeadm lists."""
    sys.path.insert(0, str(ROOT / "tests" / "standins"))
    import kubeadm as standin
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    listing = "\n".join(standin.images_for(version))
    (bin_ / "kubeadm").write_text(f"#!/bin/sh\ncat <<'EOF'\n{listing}\nEOF\n")
    (bin_ / "crictl").write_text("#!/bin/sh\necho \"$@\" >>\"$PULLS\"\n")
    for f in bin_.iterdir():
        f.chmod(0o755)
    return bin_


@pytest.mark.parametrize("kpr", [False, True])
def test_kube_proxy_image_is_baked_exactly_when_kube_proxy_runs(renders, tmp_path, kpr):
    out = renders.text(cilium_text(kpr=kpr))
    text = (scripts_of(out) / "50-images.sh").read_text()
    version = versions.KUBERNETES[newest_minor("v1.20.0")].newest_patch
    if not kpr:
        assert f"kubeadm config images pull --kubernetes-version v{version}" in text
        assert "/kube-proxy:" not in text
    else:
        assert "kubeadm config images pull" not in text
        # run the script's own lines from its list to its pulls
        start = text.index('list=$(mktemp)')
        end = text.index("done <\"$list\"", start) + len("done <\"$list\"")
        prog = "set -euo pipefail\nSOCKET=x\n" + text[start:end] + '\ncat "$list"\n'
        bin_ = fake_kubeadm(tmp_path, version)
        r = subprocess.run(["bash", "-c", prog], capture_output=True, text=True,
                           env={"PATH": f"{bin_}:/usr/bin:/bin", "PULLS": str(tmp_path / "pulls")})
        assert r.returncode == 0, r.stderr
        listed = r.stdout.split()
        assert len(listed) == 6 and not [i for i in listed if "/kube-proxy:" in i]
        pulled = [ln.split()[-1] for ln in (tmp_path / "pulls").read_text().splitlines()]
        assert pulled == listed
    exp = json.loads((out / "packer/files/opt/bakery/node-check.json").read_text())
    assert exp.get("kubeProxy", True) is (not kpr)
    assert exp["helmVersion"] == versions.HELM_VERSION


def test_the_plugin_decides_the_image_name_and_the_node_check():
    """The fields Cilium adds to the image plan are bake inputs (another value, another image
    name); a Calico cluster's node check expects no Helm and keeps kube-proxy's image."""
    from dataclasses import replace

    from bakery.plan.image import image_plan, node_check_expectations
    from bakery.spec.pipeline import load_cluster
    cluster, _ = load_cluster(str(ROOT / "examples" / "lab" / "cluster.yaml"))
    p = image_plan(cluster)
    assert {"helm_version", "kube_proxy", "cni_asset_sha256"} <= set(p.inputs())
    for change in ({"helm_version": versions.HELM_VERSION}, {"kube_proxy": False}, {"cni_asset_sha256": (("a", "b"),)}):
        assert replace(p, **change).fingerprint != p.fingerprint, change
    assert not {"helmVersion", "kubeProxy"} & set(node_check_expectations(p))


# -- the node check -------------------------------------------------------------------------------

def FakeSystem(commands):
    from test_nodecheck import FakeSystem as Fake

    return Fake("/nonexistent", commands)


def test_the_node_check_expects_no_kube_proxy_image_and_the_baked_helm():
    sys.path.insert(0, str(ROOT / "tests" / "standins"))
    import kubeadm as standin
    listing = standin.images_for("1.36.3")
    present = [i for i in listing if "/kube-proxy:" not in i]
    images = json.dumps({"images": [{"repoTags": [i]} for i in present]})
    commands = {("kubeadm",): (0, "\n".join(listing) + "\n"), ("crictl",): (0, images),
                ("helm", "version"): (0, "v4.2.4")}
    exp = {"kubernetesVersion": "1.36.3", "criSocket": "unix:///run/containerd/containerd.sock", "images": []}
    # kube-proxy runs: its image is missing
    [r] = nc.check_images(FakeSystem(commands), exp)
    assert not r.ok and "kube-proxy" in r.seen
    # Cilium replaces it: not expected
    [r] = nc.check_images(FakeSystem(commands), exp | {"kubeProxy": False})
    assert r.ok, r.seen
    helm = [r for r in nc.check_packages(FakeSystem(commands), exp | {"helmVersion": "v4.2.4"}) if r.name == "helm-version"]
    assert helm and helm[0].ok
    helm = [r for r in nc.check_packages(FakeSystem(commands | {("helm", "version"): (0, "v3.21.4")}),
                                         exp | {"helmVersion": "v4.2.4"}) if r.name == "helm-version"]
    assert helm and not helm[0].ok and "want v4.2.4" in helm[0].seen
    helm = [r for r in nc.check_packages(FakeSystem({k: v for k, v in commands.items() if k[0] != "helm"}),
                                         exp | {"helmVersion": "v4.2.4"}) if r.name == "helm-version"]
    assert helm and not helm[0].ok
