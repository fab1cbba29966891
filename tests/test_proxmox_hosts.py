"""Issue 19, part 3: nodes[].proxmoxNode places a node's VM on another host of the Proxmox
cluster. `bakery deploy proxmox` against the API stand-in of test_deploy_proxmox (clone with
`target`, the VM then lives on the target; a request for it on another node fails as Proxmox
does); cluster.yaml's field checked by the schema (exit 2 with file:line)."""
from __future__ import annotations

import os

import pytest
from test_deploy_proxmox import SECRET, TOKEN_ID, deployer, setup
from test_deploy_proxmox import server as server  # the fixture

from bakery.errors import EnvError

from conftest import LAB, run_bakery

PLACED = ("    - {name: k8s-node1, role: worker, address: 192.168.56.31}",
          "    - {name: k8s-node1, role: worker, address: 192.168.56.31, proxmoxNode: pve2}")
PLACED2 = ("    - {name: k8s-node2, role: worker, address: 192.168.56.32}",
           "    - {name: k8s-node2, role: worker, address: 192.168.56.32, proxmoxNode: pve3}")
SHARED = ", diskStorage: ceph"


def placed(text: str) -> str:
    return text.replace(*PLACED).replace(*PLACED2)


def multi_host(pve, *, shared=("ceph",)):
    """The stand-in as a cluster of three hosts whose template disk is on shared storage."""
    pve.cluster_nodes = ["pve", "pve2", "pve3"]
    pve.shared = set(shared)
    cfg = pve.vms[9000]["config"]
    cfg["scsi0"] = "ceph:base-9000-disk-0,size=20G"
    cfg["ide0"] = "ceph:vm-9000-cloudinit,media=cdrom"


def hosted_setup(tmp_path, pve, extra=SHARED):
    import test_deploy_proxmox as t

    orig = t.lab

    def lab(tmp, edit=None):
        return orig(tmp, lambda text: placed(edit(text) if edit else text))
    t.lab = lab
    try:
        return setup(tmp_path, pve, extra=extra)
    finally:
        t.lab = orig


def test_model_resolves_proxmox_node(tmp_path, server):
    cluster, _ = hosted_setup(tmp_path, server)
    assert [(n.name, n.proxmox_node) for n in cluster.nodes] == [
        ("k8s-master", "pve"), ("k8s-node1", "pve2"), ("k8s-node2", "pve3")]


def test_deploy_places_each_vm_on_its_host(tmp_path, server):
    multi_host(server)
    cluster, out = hosted_setup(tmp_path, server)
    results = deployer(cluster, out, server).deploy()
    assert [(r.name, r.state) for r in results] == [("k8s-master", "created"), ("k8s-node1", "created"),
                                                     ("k8s-node2", "created")]
    assert {vmid: (vm["name"], vm.get("node", "pve"), vm["status"]) for vmid, vm in server.vms.items()} == {
        9000: ("k8s-template", "pve", "stopped"), 9100: ("k8s-master", "pve", "running"),
        9101: ("k8s-node1", "pve2", "running"), 9102: ("k8s-node2", "pve3", "running")}
    clones = {p["name"]: (path, p) for m, path, p in server.requests if path.endswith("/clone")}
    # every clone runs on the template's node; the placed ones name their target
    assert all(path == "/api2/json/nodes/pve/qemu/9000/clone" for path, _ in clones.values())
    assert "target" not in clones["k8s-master"][1]
    assert clones["k8s-node1"][1]["target"] == "pve2" and clones["k8s-node2"][1]["target"] == "pve3"
    # the seed ISO is on the ISO storage of the VM's own host (local: per node), attached there
    for n in cluster.nodes:
        cfg = server.vms[n.vm_id]["config"]
        volid = cfg["ide2"].split(",")[0]
        assert volid in server.volumes(n.proxmox_node, "local"), n.name
    assert not any(v.startswith("local:iso/lab_k8s-node1") for v in server.storage["local"])
    # the later calls for a VM went to its host's path
    for _method, path, _ in server.requests:
        if "/qemu/9101/" in path:
            assert path.startswith("/api2/json/nodes/pve2/"), path


def test_deploy_again_finds_the_vms_on_their_hosts(tmp_path, server):
    multi_host(server)
    cluster, out = hosted_setup(tmp_path, server)
    deployer(cluster, out, server).deploy()
    server.requests.clear()
    assert [r.state for r in deployer(cluster, out, server).deploy()] == ["exists"] * 3
    assert [r for r in server.requests if r[0] == "POST"] == []


def test_a_vm_on_another_host_than_its_proxmox_node_is_left_alone(tmp_path, server):
    multi_host(server)
    cluster, out = hosted_setup(tmp_path, server)
    server.vms[9101] = {"name": "k8s-node1", "status": "running", "config": {"name": "k8s-node1"}, "node": "pve"}
    with pytest.raises(EnvError, match="VM 9101 \\(k8s-node1\\) is on pve, not on its proxmoxNode pve2"):
        deployer(cluster, out, server).deploy(only={"k8s-node1"})


def test_unknown_host_is_a_clear_error(tmp_path, server):
    server.cluster_nodes = ["pve", "pve2"]  # no pve3
    server.shared = {"ceph"}
    cluster, out = hosted_setup(tmp_path, server)
    with pytest.raises(EnvError, match="k8s-node2: proxmoxNode pve3 is not a node of the Proxmox cluster "
                                       "\\(its nodes: pve, pve2\\)"):
        deployer(cluster, out, server).deploy()
    assert set(server.vms) == {9000}, "nothing is made before every host is known"


def test_clone_to_another_host_needs_shared_storage(tmp_path, server):
    """The stand-in, as qemu-server: the template on local storage cannot be cloned to
    another node; neither can a clone to a disk storage that is not shared."""
    multi_host(server, shared=())
    cluster, out = hosted_setup(tmp_path, server)
    with pytest.raises(EnvError, match="can't clone to non-shared storage 'ceph'"):
        deployer(cluster, out, server).deploy(only={"k8s-node1"})
    server.shared = {"ceph"}
    server.vms[9000]["config"]["scsi0"] = "local-lvm:base-9000-disk-0,size=20G"
    with pytest.raises(EnvError, match="can't clone VM to node 'pve2' \\(VM uses local storage\\)"):
        deployer(cluster, out, server).deploy(only={"k8s-node1"})
    assert set(server.vms) == {9000}


def test_standin_refuses_a_vm_on_the_wrong_node(tmp_path, server):
    """A stand-in rule: a node's API acts only on its own VMs, as Proxmox does."""
    from bakery.deliver import proxmox_api as deploy_proxmox

    multi_host(server)
    cluster, out = hosted_setup(tmp_path, server)
    deployer(cluster, out, server).deploy(only={"k8s-node1"})
    api = deploy_proxmox.connect(server.url, TOKEN_ID, SECRET)
    d = deploy_proxmox.Deployer(cluster, out, api)
    with pytest.raises(EnvError, match="Configuration file 'nodes/pve/qemu-server/9101.conf' does not exist"):
        d._call("read", d.host("pve").qemu(9101).config.get)
    assert d._call("read", d.host("pve2").qemu(9101).config.get)["name"] == "k8s-node1"
    with pytest.raises(EnvError, match="no such cluster node 'pve9'"):
        d._call("read", d.host("pve9").qemu.get)


def test_cicustom_snippets_are_checked_on_the_vms_host(tmp_path, server):
    multi_host(server)
    cluster, out = hosted_setup(tmp_path, server)
    for part in ("user", "network", "meta"):  # on pve's local storage only: pve2 cannot read them
        server.storage["local"][f"local:snippets/lab_k8s-node1-{part}.yaml"] = ("snippets", b"")
    with pytest.raises(EnvError, match="k8s-node1: snippets missing on local of pve2"):
        deployer(cluster, out, server, cicustom=True).deploy(only={"k8s-node1"})
    server.shared.add("local")  # a shared snippet storage: every node reads the same files
    deployer(cluster, out, server, cicustom=True).deploy(only={"k8s-node1"})
    assert server.vms[9101]["node"] == "pve2" and server.vms[9101]["status"] == "running"


def test_cli_deploy_to_an_unknown_host_exits_1(tmp_path, server):
    server.cluster_nodes = ["pve", "pve2"]
    cluster_yaml = tmp_path / "c.yaml"
    cluster_yaml.write_text(placed(LAB.read_text()).replace(
        "    builders: [virtualbox-iso, proxmox-iso, qemu]",
        f"    builders: [proxmox-iso]\n    proxmox: {{url: '{server.url}', tokenId: '{TOKEN_ID}'{SHARED}}}"))
    env = {**os.environ, "REQUESTS_CA_BUNDLE": str(server.cert), "PROXMOX_TOKEN_SECRET": SECRET}
    r = run_bakery("deploy", "proxmox", cluster_yaml, "--out", tmp_path / "out", env=env)
    assert r.returncode == 1, r.stderr
    assert "k8s-node2: proxmoxNode pve3 is not a node of the Proxmox cluster (its nodes: pve, pve2)" in r.stderr
    assert "Traceback" not in r.stderr and set(server.vms) == {9000}


@pytest.mark.parametrize("value", ["PVE2", "pve_2", "-pve", "a" * 64, "pve2\n"])
def test_bad_proxmox_node_name_is_exit_2_with_its_line(tmp_path, value):
    import json

    cluster_yaml = tmp_path / "c.yaml"
    cluster_yaml.write_text(LAB.read_text().replace(
        PLACED[0], PLACED[0].replace("}", f", proxmoxNode: {json.dumps(value)}}}")))
    line = next(i for i, t in enumerate(cluster_yaml.read_text().splitlines(), 1) if "proxmoxNode" in t)
    r = run_bakery("validate", cluster_yaml)
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"c.yaml:{line}:" in r.stderr + r.stdout and "proxmoxNode" in r.stderr + r.stdout
    assert "Traceback" not in r.stderr
