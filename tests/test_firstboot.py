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
import json
import re
import stat
import subprocess
from pathlib import Path

import pytest
import yaml
from standins.contracts import validate_installation, validate_kube_doc

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


def test_validators_can_fail():
    """The spec checks reject what kubeadm/kubelet/the operator would reject."""
    init = {"apiVersion": "kubeadm.k8s.io/v1beta4", "kind": "InitConfiguration",
            "nodeRegistration": {"kubeletExtraArgs": {"node-ip": "1.2.3.4"}}}  # the v1beta3 map form
    assert any("kubeletExtraArgs" in e for e in validate_kube_doc(init))
    join = {"apiVersion": "kubeadm.k8s.io/v1beta4", "kind": "JoinConfiguration",
            "discovery": {"bootstrapToken": {"token": "a", "caCertHash": ["x"]}}, "timeouts": {"discovery": "15 min"}}
    errs = validate_kube_doc(join)
    assert any("caCertHash: unknown field" in e for e in errs) and any("timeouts.discovery" in e for e in errs)
    assert validate_kube_doc({"apiVersion": "kubeadm.k8s.io/v1beta2", "kind": "InitConfiguration"})
    assert validate_kube_doc({"apiVersion": "kubeadm.k8s.io/v1beta3", "kind": "InitConfiguration"}) == []
    assert validate_kube_doc({"apiVersion": "kubeadm.k8s.io/v1beta3", "kind": "InitConfiguration",
                              "timeouts": {"discovery": "5m0s"}})  # v1beta4 only
    assert validate_kube_doc({"apiVersion": "kubeadm.k8s.io/v1beta4", "kind": "KubeletConfiguration"})
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
        assert files[KUBEADM_CONFIG]["permissions"] == "0600" and files[VALUES]["permissions"] == "0600"
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
                                 '$ENDPOINT_HOST:$ENDPOINT_PORT|${CNI_ASSETS[*]}"'],
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


# The first boot itself runs in the cluster rehearsal (tests/test_rehearse.py), against the
# stand-ins of kubeadm, kubelet, kubectl and the API server.

CALICO_OBJECTS = json.loads((SPECS / "calico-manifests-objects.json").read_text())

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
        assert len(lines) == 20, node
        for line in lines:
            assert re.match(r"^[A-Z_]+=(\(.*\)|'[^']*'|[A-Za-z0-9_./:@%+=,-]+)$", line), (node, line)




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
