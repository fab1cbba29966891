"""Per-node cloud-init and admin.conf, checked by their real consumers.

- Debian's cloud-init validates every user-data (`cloud-init schema -c`) and renders every
  network-config to netplan and networkd (`cloud-init devel net-convert`); the tests read
  the address, MAC and gateway back from what cloud-init wrote.
- Every kubeadm document is validated against the vendored field tree of kubeadm v1beta4
  (tests/data/specs/kubeadm-v1beta4.json), the KubeletConfiguration against
  kubelet-config-v1beta1.json, the Calico Installation against the CRD's openAPIV3Schema
  with unknown fields forbidden (jsonschema).
- openssl and kubectl read admin.conf; shellcheck reads the first-boot script; the script
  itself runs here with stand-in kubeadm/kubectl that record their arguments.
"""
from __future__ import annotations

import base64
import copy
import functools
import json
import os
import re
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from conftest import EXAMPLES, LAB, ROOT, cloud_init, need, net_convert, render_here, run_bakery

SPECS = ROOT / "tests" / "data" / "specs"
CLUSTERS = {"lab": LAB, "single": EXAMPLES / "single" / "cluster.yaml", "ha": EXAMPLES / "ha" / "cluster.yaml"}
KUBEADM_CONFIG = "/etc/bakery/kubeadm.yaml"
CALICO_INSTALLATION = "/etc/bakery/calico-installation.yaml"
SCRIPT = "/usr/local/lib/bakery/firstboot.sh"
VALUES = "/etc/bakery/firstboot.env"
PKI = {"/etc/kubernetes/pki/ca.crt": "0644", "/etc/kubernetes/pki/ca.key": "0600",
       "/etc/kubernetes/pki/front-proxy-ca.crt": "0644", "/etc/kubernetes/pki/front-proxy-ca.key": "0600",
       "/etc/kubernetes/pki/etcd/ca.crt": "0644", "/etc/kubernetes/pki/etcd/ca.key": "0600",
       "/etc/kubernetes/pki/sa.key": "0600", "/etc/kubernetes/pki/sa.pub": "0644"}


# -- rendering ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rendered(renders):
    """Each example's shared render (read-only): {name: (out, cluster.yaml data)}.
    test_rendering_twice_is_byte_identical renders them again with the real CLI."""
    return {name: (renders.example(name), yaml.safe_load(path.read_text())) for name, path in CLUSTERS.items()}


def nodes_of(data: dict) -> list[dict]:
    return data["spec"]["nodes"]


def user_data(out: Path, node: str) -> dict:
    text = (out / "nodes" / node / "user-data").read_text()
    assert text.splitlines()[0] == "#cloud-config"
    return yaml.safe_load(text)


def written(ud: dict) -> dict[str, dict]:
    return {f["path"]: f for f in ud["write_files"]}


def kubeadm_docs(out: Path, node: str) -> dict[str, dict]:
    docs = list(yaml.safe_load_all(written(user_data(out, node))[KUBEADM_CONFIG]["content"]))
    kinds = [d["kind"] for d in docs]
    assert len(kinds) == len(set(kinds))
    return {d["kind"]: d for d in docs}


def all_nodes(rendered):
    for name, (out, data) in rendered.items():
        for node in nodes_of(data):
            yield name, out, data, node


def bundle(out: Path) -> dict:
    return yaml.safe_load((out / "secrets.yaml").read_text())


# -- the vendored Kubernetes field trees ----------------------------------------------

GO_DURATION = re.compile(r"^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$")
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def check_value(value, spec: dict, path: str) -> list[str]:
    t = spec["type"]
    bad = [f"{path}: {value!r} is not {t}"]
    if t == "string":
        if not isinstance(value, str):
            return bad
        if "enum" in spec and value not in spec["enum"]:
            return [f"{path}: {value!r} is not one of {spec['enum']}"]
        return []
    if t == "int":
        return [] if isinstance(value, int) and not isinstance(value, bool) else bad
    if t == "float":
        return [] if isinstance(value, (int, float)) and not isinstance(value, bool) else bad
    if t == "bool":
        return [] if isinstance(value, bool) else bad
    if t == "duration":
        return [] if isinstance(value, str) and GO_DURATION.match(value) else bad
    if t == "time":
        return [] if isinstance(value, str) and RFC3339.match(value) else bad
    if t == "quantity":
        return [] if isinstance(value, (str, int, float)) and not isinstance(value, bool) else bad
    if t == "object":
        if not isinstance(value, dict):
            return bad
        return check_fields(value, spec.get("fields", {}), path) if "fields" in spec else []
    if t == "[]object":
        if not isinstance(value, list):
            return bad
        return [e for i, item in enumerate(value)
                for e in (check_fields(item, spec["fields"], f"{path}[{i}]") if isinstance(item, dict)
                          else [f"{path}[{i}]: not an object"])]
    if t.startswith("[]"):
        inner = {"type": t[2:]}
        if not isinstance(value, list):
            return bad
        return [e for i, item in enumerate(value) for e in check_value(item, inner, f"{path}[{i}]")]
    if t.startswith("map[string]"):
        inner = {"type": t[len("map[string]"):]}
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            return bad
        return [e for k, v in value.items() for e in check_value(v, inner, f"{path}.{k}")]
    raise AssertionError(f"unknown spec type {t} at {path}")


def check_fields(obj: dict, fields: dict, path: str) -> list[str]:
    errors = []
    for key, value in obj.items():
        if key not in fields:
            errors.append(f"{path}.{key}: unknown field")
        else:
            errors += check_value(value, fields[key], f"{path}.{key}")
    return errors


@functools.cache
def spec(name: str) -> dict:
    return json.loads((SPECS / name).read_text())


def validate_kube_doc(doc: dict) -> list[str]:
    api = doc.get("apiVersion")
    if api == spec("kubeadm-v1beta4.json")["apiVersion"]:
        kinds = spec("kubeadm-v1beta4.json")["kinds"]
        if doc.get("kind") not in kinds:
            return [f"kind {doc.get('kind')} is not a kubeadm v1beta4 kind"]
        return check_fields(doc, kinds[doc["kind"]]["fields"], doc["kind"])
    if api == spec("kubelet-config-v1beta1.json")["apiVersion"]:
        s = spec("kubelet-config-v1beta1.json")
        if doc.get("kind") != s["kind"]:
            return [f"kind {doc.get('kind')} is not {s['kind']}"]
        return check_fields(doc, s["fields"], doc["kind"])
    return [f"apiVersion {api} has no vendored spec"]


def strict(schema):
    """The CRD schema with unknown fields forbidden, as the API server prunes/rejects them."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if (node.get("type") == "object" and "properties" in node and "additionalProperties" not in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):
                node["additionalProperties"] = False
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
    walk(schema)
    return schema


def validate_installation(doc: dict) -> list[str]:
    import jsonschema

    s = spec("calico-installation-crd-openapi.json")
    errors = []
    if doc.get("apiVersion") != s["apiVersion"] or doc.get("kind") != s["kind"]:
        errors.append(f"{doc.get('apiVersion')}/{doc.get('kind')} is not {s['apiVersion']}/{s['kind']}")
    schema = strict(s["schema"])
    schema["properties"]["metadata"] = {"type": "object"}
    validator = jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker())
    errors += [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]
    if doc.get("metadata", {}).get("name") != "default":  # the CRD's x-kubernetes-validations rule
        errors.append("metadata.name must be 'default'")
    return errors


def test_validators_can_fail():
    """The spec checks reject what kubeadm/kubelet/the operator would reject."""
    init = {"apiVersion": "kubeadm.k8s.io/v1beta4", "kind": "InitConfiguration",
            "nodeRegistration": {"kubeletExtraArgs": {"node-ip": "1.2.3.4"}}}  # the v1beta3 map form
    assert any("kubeletExtraArgs" in e for e in validate_kube_doc(init))
    join = {"apiVersion": "kubeadm.k8s.io/v1beta4", "kind": "JoinConfiguration",
            "discovery": {"bootstrapToken": {"token": "a", "caCertHash": ["x"]}}, "timeouts": {"discovery": "15 min"}}
    errs = validate_kube_doc(join)
    assert any("caCertHash: unknown field" in e for e in errs) and any("timeouts.discovery" in e for e in errs)
    assert validate_kube_doc({"apiVersion": "kubeadm.k8s.io/v1beta3", "kind": "InitConfiguration"})
    kubelet = {"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration", "cgroupDrivers": "systemd"}
    assert validate_kube_doc(kubelet)
    inst = {"apiVersion": "operator.tigera.io/v1", "kind": "Installation", "metadata": {"name": "default"},
            "spec": {"calicoNetwork": {"ipPools": [{"cidr": "10.0.0.0/16", "encapsulation": "IPinIP"}],
                                       "nodeAddressAutodetectionV4": {"cidr": ["10.0.0.0/24"]}}}}
    errs = validate_installation(inst)
    assert any("IPinIP" in e for e in errs) and any("'cidr' was unexpected" in e for e in errs), errs


# -- cloud-init: user-data --------------------------------------------------------------

def test_cloud_init_schema_accepts_every_user_data(rendered):
    need("cloud-init")
    for _, out, _, node in all_nodes(rendered):
        path = out / "nodes" / node["name"] / "user-data"
        r = cloud_init("schema", "-c", path)
        assert r.returncode == 0 and "Valid cloud-config" in r.stdout, (path, r.stdout, r.stderr)
        assert "deprecat" not in (r.stdout + r.stderr).lower(), r.stdout + r.stderr


def test_cloud_init_schema_rejects_a_broken_user_data(rendered, tmp_path):
    """The check above can fail: a write_files mode as a number is refused."""
    need("cloud-init")
    out, _ = rendered["lab"]
    text = (out / "nodes" / "k8s-node1" / "user-data").read_text().replace("permissions: '0600'", "permissions: 600")
    (tmp_path / "ud").write_text(text)
    r = cloud_init("schema", "-c", tmp_path / "ud")
    assert r.returncode != 0 and "write_files.0.permissions: 600 is not of type 'string'" in r.stderr, r.stderr


def test_user_data_basics(rendered):
    for _, out, data, node in all_nodes(rendered):
        ud = user_data(out, node["name"])
        assert ud["hostname"] == node["name"] and ud["fqdn"] == node["name"]
        access = data["spec"].get("access", {})
        (user,) = ud["users"]
        assert user["name"] == access.get("user", "kube") and user["lock_passwd"] is True
        assert user.get("ssh_authorized_keys", []) == access.get("sshAuthorizedKeys", [])
        assert ud["runcmd"][-1][:2] == ["sh", "-c"] and "systemctl start bakery-firstboot.service" in ud["runcmd"][-1][2]
        assert ud["package_update"] is False and ud["package_upgrade"] is False
        files = written(ud)
        assert files[SCRIPT]["permissions"] == "0700"
        assert files[KUBEADM_CONFIG]["permissions"] == "0600" and files[VALUES]["permissions"] == "0644"
        for f in files.values():
            assert f["owner"] == "root:root"
        assert stat.S_IMODE((out / "nodes" / node["name"] / "user-data").stat().st_mode) == 0o600


def test_no_worker_file_holds_a_private_key(rendered):
    for _, out, _, node in all_nodes(rendered):
        if node["role"] != "worker":
            continue
        folder = out / "nodes" / node["name"]
        for f in folder.iterdir():
            assert b"PRIVATE KEY" not in f.read_bytes(), f
        assert not any(p.startswith("/etc/kubernetes/pki") for p in written(user_data(out, node["name"])))


def test_control_plane_nodes_get_the_bundle_pki(rendered):
    need("openssl")
    for _, out, _, node in all_nodes(rendered):
        if node["role"] != "control-plane":
            continue
        files = written(user_data(out, node["name"]))
        assert {p: files[p]["permissions"] for p in PKI} == PKI
        b = bundle(out)
        assert files["/etc/kubernetes/pki/ca.crt"]["content"] == b["ca"]["certificate"]
        assert files["/etc/kubernetes/pki/etcd/ca.key"]["content"] == b["etcdCa"]["key"]
        assert files["/etc/kubernetes/pki/sa.pub"]["content"] == b["serviceAccount"]["publicKey"]
        for name in ("ca", "front-proxy-ca", "etcd/ca"):
            cert = files[f"/etc/kubernetes/pki/{name}.crt"]["content"].encode()
            key = files[f"/etc/kubernetes/pki/{name}.key"]["content"].encode()
            a = subprocess.run(["openssl", "x509", "-noout", "-pubkey"], input=cert, capture_output=True)
            k = subprocess.run(["openssl", "pkey", "-pubout"], input=key, capture_output=True)
            assert a.returncode == 0 and a.stdout == k.stdout, name


# -- kubeadm ----------------------------------------------------------------------------

def test_every_kubeadm_document_matches_the_spec(rendered):
    seen = set()
    for _, out, _, node in all_nodes(rendered):
        for kind, doc in kubeadm_docs(out, node["name"]).items():
            assert validate_kube_doc(doc) == [], (node["name"], kind)
            seen.add(kind)
    assert seen == {"InitConfiguration", "ClusterConfiguration", "KubeletConfiguration", "JoinConfiguration"}


def test_init_node_configuration(rendered):
    for _name, (out, data) in rendered.items():
        first = next(n for n in nodes_of(data) if n["role"] == "control-plane")
        docs = kubeadm_docs(out, first["name"])
        assert set(docs) == {"InitConfiguration", "ClusterConfiguration", "KubeletConfiguration"}
        init, cc = docs["InitConfiguration"], docs["ClusterConfiguration"]
        (token,) = init["bootstrapTokens"]
        assert token["token"] == bundle(out)["bootstrapToken"]
        assert token["ttl"] == "24h0m0s"
        assert token["usages"] == ["signing", "authentication"]
        assert token["groups"] == ["system:bootstrappers:kubeadm:default-node-token"]
        assert init["localAPIEndpoint"]["advertiseAddress"] == first["address"]
        reg = init["nodeRegistration"]
        assert reg["name"] == first["name"] and reg["criSocket"] == "unix:///run/containerd/containerd.sock"
        assert {"name": "node-ip", "value": first["address"]} in reg["kubeletExtraArgs"]
        net = data["spec"]["network"]
        assert cc["networking"]["podSubnet"] == net["podCidr"]
        assert cc["networking"]["serviceSubnet"] == net["serviceCidr"]
        assert cc["kubernetesVersion"] == "v" + data["spec"]["kubernetes"]["version"]
        endpoint = data["spec"].get("controlPlane", {}).get("endpoint") or \
            f"{data['spec'].get('controlPlane', {}).get('vip') or first['address']}:6443"
        assert cc["controlPlaneEndpoint"] == endpoint
        assert endpoint.rsplit(":", 1)[0] in cc["apiServer"]["certSANs"]
        assert docs["KubeletConfiguration"]["cgroupDriver"] == "systemd"


def test_vip_is_in_cert_sans(rendered):
    out, data = rendered["ha"]
    cc = kubeadm_docs(out, "cp1")["ClusterConfiguration"]
    assert data["spec"]["controlPlane"]["vip"] in cc["apiServer"]["certSANs"]
    assert cc["controlPlaneEndpoint"] == data["spec"]["controlPlane"]["vip"] + ":6443"


def test_single_node_has_no_taints(rendered):
    out, _ = rendered["single"]
    init = kubeadm_docs(out, "solo")["InitConfiguration"]
    assert init["nodeRegistration"]["taints"] == []
    raw = written(user_data(out, "solo"))[KUBEADM_CONFIG]["content"]
    assert "  taints: []\n" in raw  # present and empty: not kubeadm's default control-plane taint
    assert {"name": "node-labels", "value": "bakery.dev/example=single"} in init["nodeRegistration"]["kubeletExtraArgs"]
    assert kubeadm_docs(out, "solo")["ClusterConfiguration"]["encryptionAlgorithm"] == "ECDSA-P256"


def test_control_planes_with_workers_are_tainted(rendered):
    out, _ = rendered["lab"]
    taints = kubeadm_docs(out, "k8s-master")["InitConfiguration"]["nodeRegistration"]["taints"]
    assert taints == [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]


def test_join_configurations(rendered):
    need("openssl")
    for _name, out, data, node in all_nodes(rendered):
        docs = kubeadm_docs(out, node["name"])
        if "InitConfiguration" in docs:
            continue
        assert set(docs) == {"JoinConfiguration"}
        join = docs["JoinConfiguration"]
        b = bundle(out)
        bt = join["discovery"]["bootstrapToken"]
        assert bt["token"] == b["bootstrapToken"]
        cc = kubeadm_docs(out, nodes_of(data)[0]["name"])["ClusterConfiguration"]
        assert bt["apiServerEndpoint"] == cc["controlPlaneEndpoint"]
        ca = b["ca"]["certificate"].encode()
        pub = subprocess.run(["openssl", "x509", "-pubkey", "-noout"], input=ca, capture_output=True).stdout
        der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=pub, capture_output=True).stdout
        digest = subprocess.run(["openssl", "dgst", "-sha256"], input=der, capture_output=True, text=False)
        assert bt["caCertHashes"] == ["sha256:" + digest.stdout.decode().split()[-1]]
        timeout = data["spec"].get("bootstrap", {}).get("joinTimeout", "15m")
        assert join["timeouts"]["discovery"] == {"15m": "15m0s", "20m": "20m0s"}[timeout]
        reg = join["nodeRegistration"]
        assert reg["name"] == node["name"]
        assert {"name": "node-ip", "value": node["address"]} in reg["kubeletExtraArgs"]
        if node["role"] == "control-plane":
            assert join["controlPlane"]["localAPIEndpoint"]["advertiseAddress"] == node["address"]
        else:
            assert "controlPlane" not in join
        if node.get("taints") is not None:
            assert reg["taints"] == [{k: t[k] for k in ("key", "value", "effect") if k in t} for t in node["taints"]]
        if node.get("labels"):
            (labels,) = [a["value"] for a in reg["kubeletExtraArgs"] if a["name"] == "node-labels"]
            assert dict(kv.split("=", 1) for kv in labels.split(",")) == node["labels"]


# -- Calico -----------------------------------------------------------------------------

def test_calico_installation(rendered):
    for name, (out, data) in rendered.items():
        first = nodes_of(data)[0]["name"]
        files = written(user_data(out, first))
        inst = yaml.safe_load(files[CALICO_INSTALLATION]["content"])
        assert validate_installation(inst) == [], name
        net = inst["spec"]["calicoNetwork"]
        (pool,) = net["ipPools"]
        assert pool["cidr"] == data["spec"]["network"]["podCidr"]
        assert pool["encapsulation"] == data["spec"]["cni"]["calico"]["encapsulation"]
        if data["spec"].get("controlPlane", {}).get("vip"):  # the VIP is inside nodeCidr too
            assert net["nodeAddressAutodetectionV4"] == {"kubernetes": "NodeInternalIP"}
        else:
            assert net["nodeAddressAutodetectionV4"] == {"cidrs": [data["spec"]["network"]["nodeCidr"]]}
        for other in nodes_of(data)[1:]:
            assert CALICO_INSTALLATION not in written(user_data(out, other["name"]))


# -- the first-boot script --------------------------------------------------------------

def scripts(rendered):
    """(node, script, values file) for every node."""
    for _name, out, _, node in all_nodes(rendered):
        files = written(user_data(out, node["name"]))
        yield node["name"], files[SCRIPT]["content"], files[VALUES]["content"]


def test_firstboot_script_passes_shellcheck(rendered, tmp_path):
    need("shellcheck")
    texts, paths = set(), []
    for i, (node, script, values) in enumerate(scripts(rendered)):
        texts.add(script)
        paths.append(tmp_path / f"{i}-{node}.env")  # node names repeat across the examples
        paths[-1].write_text(values)
    assert len(texts) == 1  # one script for every node; what differs is in the values file
    (script,) = texts
    paths.append(tmp_path / "firstboot.sh")
    paths[-1].write_text(script)
    # one shellcheck run checks every file given, each on its own, and fails if any fails
    r = subprocess.run(["shellcheck", "-S", "style", *map(str, paths)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout
    assert script.startswith("#!/bin/bash\n") and "set -Eeuo pipefail" in script
    assert "HOOK: node check" in script


def test_firstboot_values(rendered):
    for _name, out, data, node in all_nodes(rendered):
        files = written(user_data(out, node["name"]))
        values = subprocess.run(["bash", "-c", '. /dev/stdin; echo "$NODE_NAME|$NODE_ROLE|$ACTION|$NODE_ADDRESS|'
                                 '$ENDPOINT_HOST:$ENDPOINT_PORT|${CALICO_MANIFESTS[*]}"'],
                                input=files[VALUES]["content"], capture_output=True, text=True).stdout.strip()
        first = nodes_of(data)[0]
        action = "init" if node is first else ("join-control-plane" if node["role"] == "control-plane"
                                               else "join-worker")
        cc = kubeadm_docs(out, first["name"])["ClusterConfiguration"]
        assert values == "|".join([node["name"], node["role"], action, node["address"], cc["controlPlaneEndpoint"],
                                   "v1_crd_projectcalico_org.yaml tigera-operator.yaml"])


def test_first_boot_downloads_nothing(rendered):
    for node, text, _ in scripts(rendered):
        for tool in ("curl ", "wget ", "apt-get", "apt ", "ctr pull", "crictl pull", "http://"):
            assert tool not in text, (node, tool)
        # the one https URL is the previous control-plane node's API server, inside the cluster
        assert re.findall(r"https://\S*", text) == ['https://${JOIN_AFTER}:${ENDPOINT_PORT}"'], node


STANDINS = ROOT / "tests" / "standins"
CALICO_OBJECTS = json.loads((SPECS / "calico-manifests-objects.json").read_text())
INSTALLATION_CRD = json.loads((SPECS / "calico-installation-crd-openapi.json").read_text())


def synthesize_manifests(release: str, folder: Path) -> None:
    """The Calico manifests of a release as the image has them, rebuilt from the identities of
    their objects at the release tag (tests/data/specs/calico-manifests-objects.json)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, objects in CALICO_OBJECTS[release].items():
        docs = []
        for api_version, kind, namespace, obj_name in objects:
            meta = {"name": obj_name} | ({"namespace": namespace} if namespace else {})
            doc: dict = {"apiVersion": api_version, "kind": kind, "metadata": meta}
            if kind == "CustomResourceDefinition":
                plural, _, group = obj_name.partition(".")
                scope = INSTALLATION_CRD["scope"] if obj_name == "installations.operator.tigera.io" else "Cluster"
                doc["spec"] = {"group": group, "names": {"plural": plural}, "scope": scope}
            docs.append(doc)
        (folder / name).write_text(yaml.safe_dump_all(docs))


def stage_script(text: str, values: str, tmp: Path, release: str = "v3.32.1", **overrides) -> Path:
    """The node's script and values with its on-node paths moved under tmp (both are plain
    NAME=value lines), the kubeadm and kubectl stand-ins (tests/standins/) in PATH, the
    release's Calico manifests in the image's folder and the seed's CA files in pki/."""
    paths = {"FIRSTBOOT_ENV": tmp / "etc/firstboot.env", "KUBEADM_CONFIG": tmp / "etc/kubeadm.yaml",
             "PKI_DIR": tmp / "pki", "PKI_BACKUP": tmp / "pki-backup", "ADMIN_KUBECONFIG": tmp / "admin.conf",
             "CALICO_DIR": tmp / "calico", "CALICO_INSTALLATION": tmp / "etc/calico-installation.yaml",
             "SENTINEL": tmp / "var/node-ready", "NODE_CHECK": tmp / "no-node-check",
             "KUBE_VIP_MANIFEST": tmp / "manifests/kube-vip.yaml", "STEPS_DIR": tmp / "var/steps",
             "LOG_FILE": tmp / "log/firstboot.log", "RETRY_PAUSE": 1}
    kubeadm_config = getattr(values, "kubeadm_config", None)  # the seed's own, when known
    node_values = {"ADMIN_USER": "bakery-test-no-such-user"}
    for name, value in overrides.items():
        (paths if name in paths else node_values)[name] = value
    for name, value in paths.items():
        text, n = re.subn(rf"^{name}=.*$", f"{name}='{value}'", text, count=1, flags=re.M)
        assert n == 1, name
    for name, value in node_values.items():
        values, n = re.subn(rf"^{name}=.*$", f"{name}='{value}'" if not str(value).startswith("(") else f"{name}={value}",
                            values, count=1, flags=re.M)
        assert n == 1, name
    (tmp / "etc").mkdir()
    (tmp / "etc/firstboot.env").write_text(values)
    script = tmp / "firstboot.sh"
    script.write_text(text)
    bin_ = tmp / "bin"
    bin_.mkdir()
    for tool in ("kubeadm", "kubectl"):
        stand_in = bin_ / tool
        stand_in.write_text(f'#!/bin/sh\nexec {sys.executable} {STANDINS / (tool + ".py")} "$@"\n')
        stand_in.chmod(0o755)
    (tmp / "pki").mkdir()
    (tmp / "pki" / "ca.crt").write_text("stand-in\n")
    (tmp / "pki" / "ca.key").write_text("stand-in key\n")
    action = re.search(r"^ACTION='?([a-z-]+)", values, re.M).group(1)
    (tmp / "etc/kubeadm.yaml").write_text(kubeadm_config or
        "apiVersion: kubeadm.k8s.io/v1beta4\nkind: " + ("InitConfiguration" if action == "init"
                                                       else "JoinConfiguration") + "\n"
        + ("controlPlane: {}\n" if action == "join-control-plane" else ""))
    (tmp / "etc/calico-installation.yaml").write_text(
        "apiVersion: operator.tigera.io/v1\nkind: Installation\nmetadata: {name: default}\nspec: {}\n")
    synthesize_manifests(release, tmp / "calico")
    return script


def run_script(script: Path, tmp: Path, **env):
    e = dict(os.environ, PATH=f"{tmp / 'bin'}:{os.environ['PATH']}", STANDIN_DIR=str(tmp), STANDIN_ROOT=str(tmp),
             **env)
    return subprocess.run(["bash", str(script)], capture_output=True, text=True, env=e, timeout=120)


def calls(tmp: Path) -> list[str]:
    f = tmp / "calls"
    return f.read_text().splitlines() if f.exists() else []


def failed_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if "FAILED" in ln]


@pytest.fixture
def listener():
    """A TCP port that answers, standing in for the API server."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    stop = threading.Event()

    def serve():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
                conn.close()
            except OSError:
                pass
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    t.join()
    srv.close()


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Values(str):
    """A node's values file, carrying the kubeadm configuration its seed writes beside it."""
    kubeadm_config: str


def node_script(rendered, cluster: str, node: str) -> tuple[str, str]:
    out, _ = rendered[cluster]
    files = written(user_data(out, node))
    values = Values(files[VALUES]["content"])
    values.kubeadm_config = files[KUBEADM_CONFIG]["content"]
    return files[SCRIPT]["content"], values


def kubectl_sends(tmp: Path) -> list[str]:
    """Every object the stand-in API server received, in order (group|kind|namespace|name)."""
    return json.loads((tmp / "api-state.json").read_text())["sent"]


def test_init_runs_kubeadm_then_calico_then_writes_the_sentinel(rendered, tmp_path):
    script = stage_script(*node_script(rendered, "lab", "k8s-master"), tmp_path)
    r = run_script(script, tmp_path)
    assert r.returncode == 0, r.stderr
    c = tmp_path / "calico"
    ssa = "apply --server-side --force-conflicts -f"
    assert calls(tmp_path) == [
        f"kubeadm init --config {tmp_path / 'etc/kubeadm.yaml'} --skip-token-print",
        "kubectl get --raw=/readyz",
        f"kubectl {ssa} {c}/v1_crd_projectcalico_org.yaml",
        f"kubectl {ssa} {c}/tigera-operator.yaml",
        "kubectl wait --for=condition=established --timeout=120s crd/installations.operator.tigera.io",
        f"kubectl {ssa} {tmp_path / 'etc/calico-installation.yaml'}",
    ]
    assert (tmp_path / "var/node-ready").read_text().startswith("init ")
    assert not failed_lines(r.stderr)
    # the secrets nothing needs any more are gone: the CA backup and the token's config file
    assert not (tmp_path / "pki-backup").exists() and not (tmp_path / "etc/kubeadm.yaml").exists()
    assert (tmp_path / "pki/ca.key").exists()  # kubeadm's own PKI stays
    log = tmp_path / "log/firstboot.log"
    assert "stand-in kubeadm init: done" in log.read_text() and stat.S_IMODE(log.stat().st_mode) == 0o600


@pytest.mark.parametrize("release", sorted(CALICO_OBJECTS))
def test_every_calico_object_is_sent_exactly_once(rendered, tmp_path, release):
    """For every catalog release: the manifests the init node applies send each object of the
    operator install (operator-crds, tigera-operator, v1_crd_projectcalico_org at the release
    tag) to the API server exactly once, and the Installation after its CRD."""
    from bakery import versions

    text, values = node_script(rendered, "lab", "k8s-master")
    manifests = versions.CALICO[release].manifests()
    script = stage_script(text, values, tmp_path, release=release,
                          CALICO_MANIFESTS="(" + " ".join(manifests) + ")")
    r = run_script(script, tmp_path)
    assert r.returncode == 0, r.stderr
    sent = kubectl_sends(tmp_path)
    assert len(sent) == len(set(sent)), [k for k in sent if sent.count(k) > 1][:5]
    expected = {"|".join([a.rpartition("/")[0] if "/" in a else "", k, ns or "", n])
                for f in ("operator-crds.yaml", "tigera-operator.yaml", "v1_crd_projectcalico_org.yaml")
                for a, k, ns, n in CALICO_OBJECTS[release].get(f, [])}
    expected.add("operator.tigera.io|Installation||default")
    assert set(sent) == expected
    assert sent.index("apiextensions.k8s.io|CustomResourceDefinition||installations.operator.tigera.io") < \
        sent.index("operator.tigera.io|Installation||default")


def test_the_catalog_manifests_hold_each_object_once():
    """The rule on the catalog alone, for every release it lists."""
    from bakery import versions

    assert set(versions.CALICO) <= set(CALICO_OBJECTS), "a catalog release without its objects list"
    for release, cal in versions.CALICO.items():
        objs = [tuple(o) for m in cal.manifests() for o in CALICO_OBJECTS[release][m]]
        assert len(objs) == len(set(objs)), release
        every = {tuple(o) for f in ("operator-crds.yaml", "tigera-operator.yaml", "v1_crd_projectcalico_org.yaml")
                 for o in CALICO_OBJECTS[release].get(f, [])}
        assert set(objs) == every, release


def test_the_api_standin_refuses_what_the_api_server_refuses(tmp_path):
    """The kubectl stand-in is only a judge if it can say no."""
    synthesize_manifests("v3.32.1", tmp_path / "calico")
    (tmp_path / "bin").mkdir()
    (tmp_path / "admin.conf").write_text("stand-in\n")
    inst = tmp_path / "installation.yaml"
    inst.write_text("apiVersion: operator.tigera.io/v1\nkind: Installation\nmetadata: {name: default}\n")

    def kubectl(*args, **env):
        return subprocess.run([sys.executable, STANDINS / "kubectl.py", *map(str, args)], capture_output=True,
                              text=True, env={**os.environ, "STANDIN_DIR": str(tmp_path),
                                              "KUBECONFIG": str(tmp_path / "admin.conf"), **env})
    crds, operator = tmp_path / "calico/v1_crd_projectcalico_org.yaml", tmp_path / "calico/tigera-operator.yaml"
    assert "no matches for kind" in kubectl("apply", "--server-side", "-f", inst).stderr  # CRD first
    orphan = tmp_path / "orphan.yaml"
    orphan.write_text("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: a, namespace: nosuch}\n")
    assert 'namespaces "nosuch" not found' in kubectl("apply", "--server-side", "-f", orphan).stderr
    assert "Too long" in kubectl("apply", "-f", crds).stderr  # client-side apply of large CRDs
    assert kubectl("create", "-f", crds).returncode == 0
    r = kubectl("create", "-f", tmp_path / "calico/operator-crds.yaml")  # the legacy copy: twice
    assert r.returncode == 1 and "AlreadyExists" in r.stderr
    assert "conflict" in kubectl("apply", "--server-side", "-f", crds).stderr  # another manager's objects
    assert kubectl("apply", "--server-side", "--force-conflicts", "-f", crds).returncode == 0
    assert kubectl("apply", "--server-side", "-f", operator).returncode == 0
    assert kubectl("wait", "--for=condition=established", "crd/nosuch.example.com").returncode == 1
    assert "refused" in kubectl("get", "--raw=/readyz", KUBECONFIG=str(tmp_path / "nosuch")).stderr
    assert "refused" in kubectl("get", "--raw=/readyz", STANDIN_API_DOWN_CALLS="1000").stderr
    assert "certificate-authority" in kubectl("--server", "https://192.0.2.1:6443", "--certificate-authority",
                                              tmp_path / "nosuch.crt", "get", "--raw=/readyz").stderr


def test_the_kubeadm_standin_refuses_what_kubeadm_refuses(tmp_path):
    cfg = tmp_path / "init.yaml"
    cfg.write_text("apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\n")

    def kubeadm(*args):
        return subprocess.run([sys.executable, STANDINS / "kubeadm.py", *map(str, args)], capture_output=True,
                              text=True, env=dict(os.environ, STANDIN_DIR=str(tmp_path), STANDIN_ROOT=str(tmp_path)))
    assert "can not mix" in kubeadm("init", "--config", cfg, "--pod-network-cidr=10.0.0.0/8").stderr
    assert "no cluster CA" in kubeadm("init", "--config", cfg, "--skip-token-print").stderr
    (tmp_path / "pki").mkdir()
    (tmp_path / "pki/ca.crt").write_text("x")
    (tmp_path / "pki/ca.key").write_text("x")
    assert kubeadm("init", "--config", cfg, "--skip-token-print").returncode == 0
    assert "already exists" in kubeadm("init", "--config", cfg).stderr  # a second init without a reset
    assert kubeadm("reset", "--force").returncode == 0
    assert not (tmp_path / "pki/ca.key").exists()  # reset empties the certificates folder
    assert "no such file" in kubeadm("join", "--config", tmp_path / "nosuch.yaml").stderr
    other = tmp_path / "other.yaml"
    other.write_text("apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\n---\n"
                     "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    assert "unknown kind" in kubeadm("init", "--config", other).stderr
    join = tmp_path / "join.yaml"
    join.write_text("apiVersion: kubeadm.k8s.io/v1beta4\nkind: JoinConfiguration\ncontrolPlane: {}\n")
    (tmp_path / "manifests/kube-vip.yaml").write_text("static pod\n")
    assert "DirAvailable--etc-kubernetes-manifests" in kubeadm("join", "--config", join).stderr
    join.write_text(join.read_text() + "nodeRegistration: {ignorePreflightErrors: "
                    "[DirAvailable--etc-kubernetes-manifests]}\n")
    assert kubeadm("join", "--config", join).returncode == 0


def test_a_rerun_of_the_api_steps_changes_nothing(rendered, tmp_path):
    """Every first-boot API step is idempotent: run the Calico step again on a cluster that has
    every object, and it succeeds."""
    script = stage_script(*node_script(rendered, "lab", "k8s-master"), tmp_path)
    assert run_script(script, tmp_path).returncode == 0
    (tmp_path / "var/node-ready").unlink()
    (tmp_path / "var/steps/calico").unlink()
    (tmp_path / "etc/kubeadm.yaml").write_text("apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\n")
    r = run_script(script, tmp_path)
    assert r.returncode == 0, r.stderr
    assert not [c for c in calls(tmp_path)[6:] if c.startswith("kubeadm")]  # kubeadm's step was done


def test_an_interrupted_first_boot_resumes_at_its_step(rendered, tmp_path):
    """The API server goes away after kubeadm init (a reboot, a crash): the first run fails at
    the deadline; the next run (the unit at the next boot) skips the node check and kubeadm and
    finishes the Calico step."""
    check = tmp_path / "node-check"
    check.write_text(f'#!/bin/sh\necho "node-check $*" >> "{tmp_path}/calls"\n')
    check.chmod(0o755)
    script = stage_script(*node_script(rendered, "lab", "k8s-master"), tmp_path, NODE_CHECK=check,
                          JOIN_TIMEOUT_SECONDS=4)
    r = run_script(script, tmp_path, STANDIN_API_DOWN_CALLS="1000")
    assert r.returncode == 1 and not (tmp_path / "var/node-ready").exists()
    assert "transient" in r.stderr and len(failed_lines(r.stderr)) == 1
    first = calls(tmp_path)
    assert sum(c.startswith("node-check") for c in first) == 1 and sum(c.startswith("kubeadm init") for c in first) == 1
    assert (tmp_path / "pki-backup/ca.key").exists()  # still needed until the node is ready
    state = json.loads((tmp_path / "api-state.json").read_text())
    state["api_calls"] = 1000  # the API server is back
    (tmp_path / "api-state.json").write_text(json.dumps(state))
    r = run_script(script, tmp_path, STANDIN_API_DOWN_CALLS="1000")
    assert r.returncode == 0, r.stderr
    again = calls(tmp_path)[len(first):]
    assert not [c for c in again if c.startswith(("node-check", "kubeadm"))], again
    assert (tmp_path / "var/node-ready").exists() and not (tmp_path / "pki-backup").exists()


def test_transient_api_errors_are_retried(rendered, tmp_path):
    script = stage_script(*node_script(rendered, "lab", "k8s-master"), tmp_path)
    # a `sleep` that records its pause and returns at once: the backoff's delays are checked,
    # not waited for (the deadline is far; test_worker_gives_up_at_the_deadline waits for real)
    (tmp_path / "bin" / "sleep").write_text('#!/bin/sh\necho "$@" >> "$STANDIN_DIR/sleeps"\n')
    (tmp_path / "bin" / "sleep").chmod(0o755)
    r = run_script(script, tmp_path, STANDIN_API_DOWN_CALLS="2")
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("(transient); next try") == 2
    assert (tmp_path / "sleeps").read_text().split() == ["2", "4"], "2s, then twice as long"
    assert (tmp_path / "var/node-ready").exists()


def test_a_failed_init_is_reset_and_tried_again(rendered, tmp_path):
    script = stage_script(*node_script(rendered, "lab", "k8s-master"), tmp_path)
    r = run_script(script, tmp_path, STANDIN_KUBEADM_FAIL="1")
    assert r.returncode == 0, r.stderr
    kubeadm = [c.split(" --")[0] for c in calls(tmp_path) if c.startswith("kubeadm")]
    assert kubeadm == ["kubeadm init", "kubeadm reset", "kubeadm init"]
    assert (tmp_path / "var/node-ready").exists()


def test_an_init_interrupted_mid_way_is_reset_before_it_runs_again(rendered, tmp_path):
    """A reboot during kubeadm init left its files; the seed's CA was kept aside before the try."""
    script = stage_script(*node_script(rendered, "lab", "k8s-master"), tmp_path)
    (tmp_path / "pki-backup").mkdir()
    for f in ("ca.crt", "ca.key"):
        (tmp_path / "pki-backup" / f).write_text((tmp_path / "pki" / f).read_text())
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests/kube-apiserver.yaml").write_text("# half-done\n")
    (tmp_path / "var/steps").mkdir(parents=True)
    (tmp_path / "var/steps/kubeadm-started").write_text("earlier\n")
    (tmp_path / "var/steps/node-check").write_text("earlier\n")
    r = run_script(script, tmp_path)
    assert r.returncode == 0, r.stderr
    kubeadm = [c.split(" --")[0] for c in calls(tmp_path) if c.startswith("kubeadm")]
    assert kubeadm == ["kubeadm reset", "kubeadm init"]


def test_failed_init_leaves_one_line_and_no_sentinel(rendered, tmp_path):
    script = stage_script(*node_script(rendered, "lab", "k8s-master"), tmp_path, JOIN_TIMEOUT_SECONDS=1)
    r = run_script(script, tmp_path, STANDIN_KUBEADM_FAIL="1")
    assert r.returncode == 1
    (line,) = failed_lines(r.stderr)
    assert line.startswith("bakery-firstboot: FAILED on k8s-master (init): kubeadm init exited 1")
    assert r.stderr.splitlines()[-1] == line
    assert not (tmp_path / "var/node-ready").exists()
    assert not any(c.startswith("kubectl") for c in calls(tmp_path))


def test_failing_node_check_stops_before_kubeadm(rendered, tmp_path):
    check = tmp_path / "node-check"
    check.write_text(f'#!/bin/sh\necho "node-check $*" >> "{tmp_path}/calls"\necho "FAIL swap: on"\nexit 1\n')
    check.chmod(0o755)
    script = stage_script(*node_script(rendered, "lab", "k8s-node1"), tmp_path, NODE_CHECK=check)
    r = run_script(script, tmp_path)
    assert r.returncode == 1
    assert calls(tmp_path) == ["node-check --stage firstboot --expected /opt/bakery/node-check.json --role worker "
                               "--node-address 192.168.56.31 "
                               "--node-cidr 192.168.56.0/24 --endpoint 192.168.56.30:6443 --not-before "
                               + re.search(r"^CA_NOT_BEFORE=(.*)$", (tmp_path / "etc/firstboot.env").read_text(),
                                           re.M).group(1)]
    (line,) = failed_lines(r.stderr)
    assert "node check" in line and not (tmp_path / "var/node-ready").exists()
    assert "FAIL swap: on" in (tmp_path / "log/firstboot.log").read_text()


def test_worker_waits_for_the_endpoint_then_joins(rendered, tmp_path, listener):
    script = stage_script(*node_script(rendered, "lab", "k8s-node1"), tmp_path,
                          ENDPOINT_HOST="127.0.0.1", ENDPOINT_PORT=listener)
    r = run_script(script, tmp_path)
    assert r.returncode == 0, r.stderr
    assert calls(tmp_path) == [f"kubeadm join --config {tmp_path / 'etc/kubeadm.yaml'}"]
    assert (tmp_path / "var/node-ready").read_text().startswith("join-worker ")


def test_worker_gives_up_at_the_deadline(rendered, tmp_path):
    script = stage_script(*node_script(rendered, "lab", "k8s-node1"), tmp_path,
                          ENDPOINT_HOST="127.0.0.1", ENDPOINT_PORT=free_port(), JOIN_TIMEOUT_SECONDS=5)
    r = run_script(script, tmp_path)
    assert r.returncode == 1
    assert "waiting for the API server" in r.stderr  # it retried before giving up
    (line,) = failed_lines(r.stderr)
    assert "did not answer within 5s" in line and r.stderr.splitlines()[-1] == line
    assert calls(tmp_path) == []  # kubeadm never ran
    assert not (tmp_path / "var/node-ready").exists()


def test_control_plane_nodes_join_one_after_another(rendered, tmp_path, listener):
    """cp3 waits until cp2 (the control-plane node before it) serves a ready API server on its
    own address, then joins; cp2 waits for the init node."""
    out, data = rendered["ha"]
    cps = [n for n in nodes_of(data) if n["role"] == "control-plane"]
    for before, node in zip(cps, cps[1:], strict=False):
        values = written(user_data(out, node["name"]))[VALUES]["content"]
        assert f"JOIN_AFTER={before['address']}" in values
    for n in nodes_of(data):
        if n["role"] == "worker" or n is cps[0]:
            assert "JOIN_AFTER=''" in written(user_data(out, n["name"]))[VALUES]["content"]
    script = stage_script(*node_script(rendered, "ha", cps[2]["name"]), tmp_path,
                          ENDPOINT_HOST="127.0.0.1", ENDPOINT_PORT=listener)
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests/kube-vip.yaml").write_text(written(user_data(out, cps[2]["name"]))[
        "/etc/kubernetes/manifests/kube-vip.yaml"]["content"])  # in place before kubeadm, as with the seed
    r = run_script(script, tmp_path, STANDIN_API_DOWN_CALLS="1")  # cp2 not ready at the first look
    assert r.returncode == 0, r.stderr
    assert "waiting for the control-plane node" in r.stderr
    c = calls(tmp_path)
    ready = f"kubectl --server https://{cps[1]['address']}:{listener} --certificate-authority " \
            f"{tmp_path / 'pki'}/ca.crt --request-timeout=5s get --raw=/readyz"
    assert c == [ready, ready, f"kubeadm join --config {tmp_path / 'etc/kubeadm.yaml'}"]


def test_failed_join_past_the_deadline_leaves_one_line(rendered, tmp_path, listener):
    script = stage_script(*node_script(rendered, "ha", "cp2"), tmp_path,
                          ENDPOINT_HOST="127.0.0.1", ENDPOINT_PORT=listener, JOIN_TIMEOUT_SECONDS=4)
    r = run_script(script, tmp_path, STANDIN_KUBEADM_FAIL="100")
    assert "resetting and trying again" in r.stderr  # tried again while the deadline allowed
    assert r.returncode == 1
    (line,) = failed_lines(r.stderr)
    assert "kubeadm join exited 1" in line and not (tmp_path / "var/node-ready").exists()
    # a control-plane join keeps the CA files aside for a retry after kubeadm reset
    assert (tmp_path / "pki-backup" / "ca.crt").read_text() == "stand-in\n"


def test_the_unit_runs_the_script_until_the_sentinel_exists(rendered, tmp_path):
    """systemd reads the unit (systemd-analyze verify), and cloud-init's runcmd enables it and
    starts it: runcmd runs once per instance, the unit at every boot until the node is ready."""
    from bakery import plan as P

    need("systemd-analyze")
    out, _ = rendered["lab"]
    ud = user_data(out, "k8s-master")
    unit = written(ud)[P.FIRSTBOOT_UNIT]
    assert unit["permissions"] == "0644"
    path = tmp_path / P.FIRSTBOOT_UNIT_NAME
    path.write_text(unit["content"].replace(f"/bin/bash {SCRIPT}", f"/bin/bash {tmp_path}/script.sh"))
    (tmp_path / "script.sh").write_text("#!/bin/bash\n")
    r = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True)
    assert r.returncode == 0 and P.FIRSTBOOT_UNIT_NAME not in r.stderr, r.stderr
    import configparser
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.read_string(unit["content"])
    assert cp["Unit"]["ConditionPathExists"] == f"!{P.SENTINEL}"
    assert cp["Service"]["Type"] == "oneshot" and cp["Install"]["WantedBy"] == "multi-user.target"
    assert cp["Service"]["ExecStart"] == f"/bin/bash {SCRIPT}"
    run = ud["runcmd"]
    assert run[:2] == [["systemctl", "daemon-reload"], ["systemctl", "enable", P.FIRSTBOOT_UNIT_NAME]]
    assert run[2][:2] == ["sh", "-c"] and run[2][2].startswith(f"systemctl start {P.FIRSTBOOT_UNIT_NAME} ||")


def test_script_values_are_shell_quoted(rendered):
    """Every value line is NAME=word with no expansion: cluster.yaml can't inject shell."""
    for node, _script, values in scripts(rendered):
        lines = [ln for ln in values.splitlines() if ln and not ln.startswith("#")]
        assert len(lines) == 13, node
        for line in lines:
            assert re.match(r"^[A-Z_]+=(\(.*\)|'[^']*'|[A-Za-z0-9_./:@%+=,-]+)$", line), (node, line)


def test_missing_values_file_fails_clearly(rendered, tmp_path):
    script = stage_script(*node_script(rendered, "lab", "k8s-node1"), tmp_path)
    (tmp_path / "etc/firstboot.env").unlink()
    r = run_script(script, tmp_path)
    assert r.returncode == 1
    (line,) = failed_lines(r.stderr)
    assert "firstboot.env is missing" in line and calls(tmp_path) == []


# -- network-config ---------------------------------------------------------------------

def networkd_units(folder: Path) -> dict[str, dict[str, list[str]]]:
    """{file: {section.key: [values]}}; networkd allows repeated keys and sections."""
    units = {}
    for f in sorted((folder / "etc/systemd/network").glob("*.network")):
        values: dict[str, list[str]] = {}
        section = ""
        for line in f.read_text().splitlines():
            line = line.strip()
            if line.startswith("["):
                section = line.strip("[]")
            elif "=" in line:
                k, v = line.split("=", 1)
                values.setdefault(f"{section}.{k}", []).append(v)
        units[f.name] = values
    return units


def test_network_config_through_netplan_and_networkd(rendered, tmp_path):
    for i, (_name, out, data, node) in enumerate(all_nodes(rendered)):
        net = data["spec"]["network"]
        prefix = net["nodeCidr"].split("/")[1]
        nic = node.get("interface") or net.get("nodeInterface", "enp0s8")
        nat = net.get("natInterface", "enp0s3")
        gateway = net.get("gateway")
        path = out / "nodes" / node["name"] / "network-config"

        netplan = yaml.safe_load((net_convert(path, tmp_path / f"np{i}", "ubuntu", "netplan")
                                  / "etc/netplan/50-cloud-init.yaml").read_text())["network"]
        eth = netplan["ethernets"][nic]
        assert eth["addresses"] == [f"{node['address']}/{prefix}"]
        if node.get("mac"):
            assert eth["match"] == {"macaddress": node["mac"].lower()} and eth["set-name"] == nic
        else:
            assert eth["match"] == {"name": nic}
        defaults = [r["via"] for r in eth.get("routes", []) if r["to"] in ("0.0.0.0/0", "default")]
        defaults += [eth["gateway4"]] if "gateway4" in eth else []  # Debian without NAT (ifupdown)
        assert defaults == ([gateway] if gateway else [])
        assert eth.get("nameservers", {}).get("addresses", []) == net.get("nameservers", [])
        if nat:
            assert netplan["ethernets"][nat]["dhcp4"] is True
        else:
            assert set(netplan["ethernets"]) == {nic}

        units = networkd_units(net_convert(path, tmp_path / f"nd{i}", "debian", "networkd"))
        (unit,) = [u for u in units.values() if u.get("Address.Address") == [f"{node['address']}/{prefix}"]]
        if node.get("mac"):
            assert unit["Match.MACAddress"] == [node["mac"].lower()]
        else:
            assert unit["Match.Name"] == [nic]
        assert unit.get("Route.Gateway", []) == ([gateway] if gateway else [])
        assert " ".join(unit.get("Network.DNS", [])).split() == (net.get("nameservers") or [])
        if nat:
            (dhcp,) = [u for u in units.values() if u.get("Match.Name") == [nat]]
            assert dhcp["Network.DHCP"] == ["ipv4"]


def test_meta_data(rendered):
    ids = set()
    for _, out, data, node in all_nodes(rendered):
        md = yaml.safe_load((out / "nodes" / node["name"] / "meta-data").read_text())
        assert md["local-hostname"] == node["name"]
        assert md["instance-id"] == f"{data['metadata']['name']}-{node['name']}-{node.get('generation', 0)}"
        ids.add(md["instance-id"])
    assert len(ids) == sum(len(nodes_of(d)) for _, d in rendered.values())


def test_instance_id_is_the_nodes_identity_not_its_seed(tmp_path):
    """A new instance-id re-provisions a running node at its next reboot: it changes only when
    the user bumps the node's generation, not with a token rotation or an unrelated edit."""
    out = render_here(LAB, tmp_path / "lab")

    def ids():
        return {n: yaml.safe_load((out / "nodes" / n / "meta-data").read_text())["instance-id"]
                for n in ("k8s-master", "k8s-node1", "k8s-node2")}

    def user_data_of(n):
        return (out / "nodes" / n / "user-data").read_text()
    before, ud_before = ids(), user_data_of("k8s-node2")
    changed = tmp_path / "cluster.yaml"
    changed.write_text(LAB.read_text().replace("{name: k8s-node2, role: worker, address: 192.168.56.32}",
                                               "{name: k8s-node2, role: worker, address: 192.168.56.32, "
                                               "labels: {tier: web}}"))
    render_here(changed, out)
    assert user_data_of("k8s-node2") != ud_before  # the seed did change
    assert ids() == before
    render_here(changed, out, rotate_token=True)
    assert ids() == before
    bumped = tmp_path / "bumped.yaml"
    bumped.write_text(changed.read_text().replace("labels: {tier: web}}", "labels: {tier: web}, generation: 1}"))
    render_here(bumped, out)
    after = ids()
    assert after["k8s-node2"] != before["k8s-node2"] and after["k8s-node2"].endswith("-1")
    assert after["k8s-master"] == before["k8s-master"] and after["k8s-node1"] == before["k8s-node1"]


# -- admin.conf, and byte-identical renders -----------------------------------------------

def test_admin_conf(rendered, tmp_path):
    need("openssl")
    for name, (out, data) in rendered.items():
        path = out / "admin.conf"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        conf = yaml.safe_load(path.read_text())
        cc = kubeadm_docs(out, nodes_of(data)[0]["name"])["ClusterConfiguration"]
        (cluster,) = conf["clusters"]
        assert cluster["cluster"]["server"] == f"https://{cc['controlPlaneEndpoint']}"
        (user,) = conf["users"]
        ca = base64.b64decode(cluster["cluster"]["certificate-authority-data"])
        crt = base64.b64decode(user["user"]["client-certificate-data"])
        assert ca.decode() == bundle(out)["ca"]["certificate"]
        (tmp_path / f"{name}-ca.crt").write_bytes(ca)
        (tmp_path / f"{name}-admin.crt").write_bytes(crt)
        r = subprocess.run(["openssl", "verify", "-CAfile", tmp_path / f"{name}-ca.crt", tmp_path / f"{name}-admin.crt"],
                           capture_output=True, text=True)
        assert r.returncode == 0 and r.stdout.strip().endswith("OK"), r.stdout + r.stderr
        key = base64.b64decode(user["user"]["client-key-data"])
        a = subprocess.run(["openssl", "x509", "-noout", "-pubkey"], input=crt, capture_output=True).stdout
        k = subprocess.run(["openssl", "pkey", "-pubout"], input=key, capture_output=True).stdout
        assert a == k


def test_kubectl_loads_admin_conf(rendered):
    need("kubectl")
    for _name, (out, data) in rendered.items():
        r = subprocess.run(["kubectl", "--kubeconfig", str(out / "admin.conf"), "config", "view", "--raw", "-o",
                            "jsonpath={.clusters[0].cluster.server} {.users[0].name} {.current-context}"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        cc = kubeadm_docs(out, nodes_of(data)[0]["name"])["ClusterConfiguration"]
        assert r.stdout.split() == [f"https://{cc['controlPlaneEndpoint']}", "kubernetes-admin",
                                    f"kubernetes-admin@{data['metadata']['name']}"]


def test_rendering_twice_is_byte_identical(rendered, tmp_path):
    for name, (out, _) in rendered.items():
        again = tmp_path / name
        r = run_bakery("render", CLUSTERS[name], "--out", again, "--secrets", out / "secrets.yaml")
        assert r.returncode == 0, r.stderr
        for sub in ("nodes", "admin.conf"):
            a = {p.relative_to(out): p.read_bytes() for p in sorted((out / sub).rglob("*")) if p.is_file()} \
                if (out / sub).is_dir() else {sub: (out / sub).read_bytes()}
            b = {p.relative_to(again): p.read_bytes() for p in sorted((again / sub).rglob("*")) if p.is_file()} \
                if (again / sub).is_dir() else {sub: (again / sub).read_bytes()}
            assert a == b, (name, sub)


def test_debian_without_nat_gets_its_default_route_from_ifupdown(tmp_path):
    """Debian renders network-config to ifupdown: the only default route must be ifupdown's own
    `gateway` line, not a `post-up route add` that needs net-tools (absent from the image)."""
    text = LAB.read_text().replace("os: ubuntu-24.04", "os: debian-12").replace(
        "    dnsDomain: cluster.local       # optional", "    dnsDomain: cluster.local\n    natInterface: null")
    f = tmp_path / "deb.yaml"
    f.write_text(text)
    out = render_here(f, tmp_path / "out")
    conv = net_convert(out / "nodes/k8s-node1/network-config", tmp_path / "eni", "debian", "eni")
    eni = "".join(p.read_text() for p in sorted((conv / "etc/network").rglob("*")) if p.is_file())
    stanza = eni[eni.index("iface enp0s8 inet static"):]
    lines = [ln.strip() for ln in stanza.splitlines()]
    assert "gateway 192.168.56.1" in lines and "address 192.168.56.31/24" in lines
    assert "route add" not in eni
    # Ubuntu (netplan) keeps the route form
    text_u = text.replace("os: debian-12", "os: ubuntu-24.04")
    f.write_text(text_u)
    render_here(f, tmp_path / "out-u")
    nc = yaml.safe_load((tmp_path / "out-u/nodes/k8s-node1/network-config").read_text())
    assert nc["network"]["ethernets"]["enp0s8"]["routes"] == [{"to": "0.0.0.0/0", "via": "192.168.56.1"}]
