"""Issue 19, part 3: nodes[].proxmoxNode places a node's VM on another host of the Proxmox
cluster. `bakery deploy proxmox` against the API stand-in of test_deploy_proxmox (clone with
`target`, the VM then lives on the target; a request for it on another node fails as Proxmox
does); cluster.yaml's field checked by the schema (exit 2 with file:line)."""
from __future__ import annotations

import json
import os
import stat
import subprocess

import pytest
from test_deploy_proxmox import SECRET, TOKEN_ID, deployer, setup
from test_deploy_proxmox import server as server  # the fixture

from bakery.errors import EnvError

from conftest import LAB, need, run_bakery

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
    cluster_yaml = tmp_path / "c.yaml"
    cluster_yaml.write_text(LAB.read_text().replace(
        PLACED[0], PLACED[0].replace("}", f", proxmoxNode: {json.dumps(value)}}}")))
    line = next(i for i, t in enumerate(cluster_yaml.read_text().splitlines(), 1) if "proxmoxNode" in t)
    r = run_bakery("validate", cluster_yaml)
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"c.yaml:{line}:" in r.stderr + r.stdout and "proxmoxNode" in r.stderr + r.stdout
    assert "Traceback" not in r.stderr


# --- deploy.sh and destroy.sh on several hosts ------------------------------------------------

PVE_HOSTS = r'''#!/usr/bin/env python3
"""Stand-in qm / pvesm / pvesh / ssh for a Proxmox cluster of several nodes, state in
$PVE_STATE; the node a command runs on is $PVE_NODE (the template's node when unset). The
contracts of the real tools (qemu-server's qm and API2/Qemu.pm clone_vm, openssh):
- qm acts only on the VMs whose config is on the node it runs on; any other VM id is
  "Configuration file 'nodes/<node>/qemu-server/<vmid>.conf' does not exist";
- qm clone --target: a node of the cluster ("no such cluster node"), --storage shared ("can't
  clone to non-shared storage"), every template volume shared ("can't clone VM to node ...
  (VM uses local storage)"); the new VM then lives on the target;
- pvesm path: a storage that is not shared has its own folder on each node;
- ssh root@HOST CMD...: HOST a node of the cluster, the words joined by spaces and parsed again
  by the remote shell (so an unquoted word would split), stdin passed on.
"""
import json, os, subprocess, sys
root = os.environ["PVE_STATE"]
here = os.environ.get("PVE_NODE", "pve")
members = os.environ["PVE_MEMBERS"].split(",")
shared = set(filter(None, os.environ.get("PVE_SHARED", "").split(",")))
state_file = os.path.join(root, "state.json")
tool, args = os.path.basename(sys.argv[0]), sys.argv[1:]
with open(os.path.join(root, "log"), "a") as log:
    log.write(json.dumps([here, tool] + args) + "\n")
if tool == "ssh":
    i = 0
    while args[i].startswith("-"):
        i += 2 if args[i] in ("-o", "-p", "-i", "-l") else 1
    user, _, host = args[i].rpartition("@")
    if host not in members:
        print(f"ssh: Could not resolve hostname {host}: Name or service not known", file=sys.stderr)
        sys.exit(255)
    env = {**os.environ, "PVE_NODE": host}
    sys.exit(subprocess.run(["bash", "-c", " ".join(args[i + 1:])], env=env).returncode)
state = json.load(open(state_file))
def save():
    json.dump(state, open(state_file, "w"))
def shared_volume(v):
    return v.split(":")[0] in shared
if tool == "pvesh":
    assert args == ["get", "/nodes", "--output-format", "json"], args
    print(json.dumps([{"node": n, "status": "online", "type": "node"} for n in members], separators=(",", ":")))
elif tool == "pvesm":
    if args[0] == "status":
        print("Name Type Status Total Used Available %")
        print("local dir active 1 1 1 1%")
    elif args[0] == "path":
        storage, vol = args[1].split(":", 1)
        where = "shared" if storage in shared else here
        print(os.path.join(root, "storage", where, storage, vol))
elif tool == "qm":
    cmd, vmid = args[0], args[1]
    vm = state["vms"].get(vmid)
    if vm is None or vm["node"] != here:
        print(f"Configuration file 'nodes/{here}/qemu-server/{vmid}.conf' does not exist", file=sys.stderr)
        sys.exit(2)
    if cmd == "status":
        print("status: running" if vm.get("running") else "status: stopped")
    elif cmd == "start":
        vm["running"] = True
    elif cmd == "stop":
        vm["running"] = False
    elif cmd == "destroy":
        if vm.get("running"):
            print("VM is running - destroy failed", file=sys.stderr)
            sys.exit(255)
        del state["vms"][vmid]
    elif cmd == "config":
        print(f"name: {vm['name']}"); print("\n".join(vm["cfg"]))
    elif cmd == "clone":
        opts = dict(zip(args[3::2], args[4::2]))
        target = opts.get("--target", here)
        if target not in members:
            print(f"no such cluster node '{target}'", file=sys.stderr)
            sys.exit(255)
        if target != here:
            if "--storage" in opts and opts["--storage"] not in shared:
                print(f"can't clone to non-shared storage '{opts['--storage']}'", file=sys.stderr)
                sys.exit(255)
            if not all(shared_volume(line.split(": ", 1)[1]) for line in vm["cfg"]):
                print(f"can't clone VM to node '{target}' (VM uses local storage)", file=sys.stderr)
                sys.exit(255)
        if args[2] in state["vms"]:
            print(f"unable to create VM {args[2]}: config file already exists", file=sys.stderr)
            sys.exit(255)
        state["vms"][args[2]] = {"name": opts["--name"], "cfg": list(vm["cfg"]), "node": target}
    elif cmd == "set":
        for i in range(2, len(args), 2):
            vm["cfg"].append(f"{args[i][2:]}: {args[i + 1]}")
    save()
'''


def hosts_env(tmp_path, members=("pve", "pve2", "pve3"), shared=("ceph",)):
    bindir = tmp_path / "pvebin"
    bindir.mkdir(exist_ok=True)
    for tool in ("qm", "pvesm", "pvesh", "ssh"):
        (bindir / tool).write_text(PVE_HOSTS)
        (bindir / tool).chmod(0o755)
    state = tmp_path / "pve"
    state.mkdir(exist_ok=True)
    (state / "state.json").write_text(json.dumps(
        {"vms": {"9000": {"name": "tmpl", "node": "pve", "cfg": ["scsi0: ceph:base-9000-disk-0"]}}}))
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "PVE_STATE": str(state),
           "PVE_MEMBERS": ",".join(members), "PVE_SHARED": ",".join(shared)}
    env.pop("PVE_NODE", None)
    return env, state


def hosted_out(tmp_path):
    from test_deliver import lab, seed_files, write_out

    cluster = lab(tmp_path, lambda t: placed(t).replace(
        "    builders: [virtualbox-iso, proxmox-iso, qemu]",
        "    builders: [proxmox-iso]\n    proxmox: {diskStorage: ceph}"))
    return cluster, write_out(tmp_path, cluster, seed_files(cluster))


def vms(state):
    return {k: (v["name"], v["node"]) for k, v in json.loads((state / "state.json").read_text())["vms"].items()}


def log(state):
    return [json.loads(line) for line in (state / "log").read_text().splitlines()]


@pytest.mark.parametrize("script", ["proxmox/deploy.sh", "proxmox/destroy.sh"])
def test_placed_scripts_pass_shellcheck(tmp_path, script):
    shellcheck = need("shellcheck")
    _, out = hosted_out(tmp_path)
    r = subprocess.run([shellcheck, "-s", "bash", str(out / script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


def test_deploy_sh_and_destroy_sh_place_each_vm_on_its_host(tmp_path):
    bash = need("bash")
    cluster, out = hosted_out(tmp_path)
    env, state = hosts_env(tmp_path)
    r = subprocess.run([bash, str(out / "proxmox/deploy.sh")], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert vms(state) == {"9000": ("tmpl", "pve"), "9100": ("k8s-master", "pve"), "9101": ("k8s-node1", "pve2"),
                          "9102": ("k8s-node2", "pve3")}
    calls = log(state)
    clones = {c[4]: c for c in calls if c[1:3] == ["qm", "clone"]}
    assert all(c[0] == "pve" for c in clones.values()), "every clone runs where the template is"
    assert "--target" not in clones["9100"]
    assert clones["9101"][clones["9101"].index("--target") + 1] == "pve2"
    # every later command for a VM ran on its host, and it started there
    for c in calls:
        if c[1] == "qm" and c[2] != "clone" and c[3] in ("9101", "9102"):
            assert c[0] == {"9101": "pve2", "9102": "pve3"}[c[3]], c
    st = json.loads((state / "state.json").read_text())["vms"]
    assert all(st[v].get("running") for v in ("9100", "9101", "9102"))
    # each node's snippets are on its host's snippet storage (local: one folder per node), 0600,
    # byte for byte the rendered ones; cicustom names them
    for n in cluster.nodes:
        for part in ("user", "network", "meta"):
            name = f"lab_{n.name}-{part}.yaml"
            f = state / "storage" / n.proxmox_node / "local" / "snippets" / name
            assert f.read_bytes() == (out / "proxmox" / "snippets" / name).read_bytes()
            assert stat.S_IMODE(f.stat().st_mode) == 0o600
        assert f"cicustom: user=local:snippets/lab_{n.name}-user.yaml" in "\n".join(st[str(n.vm_id)]["cfg"])
    # again: nothing made, every VM found on its host
    (state / "log").unlink()
    r = subprocess.run([bash, str(out / "proxmox/deploy.sh")], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert "k8s-node2: VM 9102 exists" in r.stdout
    assert not [c for c in log(state) if c[1:3] in (["qm", "clone"], ["qm", "set"], ["qm", "start"])]
    # destroy.sh one node on another host: its VM and snippets go, there
    r = subprocess.run([bash, str(out / "proxmox/destroy.sh"), "k8s-node1"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert "9101" not in vms(state) and "9102" in vms(state)
    assert not list((state / "storage" / "pve2" / "local" / "snippets").iterdir())
    assert ["pve2", "qm", "destroy", "9101", "--purge", "1", "--destroy-unreferenced-disks", "1"] in log(state)
    r = subprocess.run([bash, str(out / "proxmox/destroy.sh")], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert vms(state) == {"9000": ("tmpl", "pve")}


def test_deploy_sh_refuses_a_host_not_in_the_cluster(tmp_path):
    bash = need("bash")
    _, out = hosted_out(tmp_path)
    env, state = hosts_env(tmp_path, members=("pve", "pve2"))
    r = subprocess.run([bash, str(out / "proxmox/deploy.sh")], capture_output=True, text=True, env=env)
    assert r.returncode == 1
    assert "error: k8s-node2: proxmoxNode pve3 is not a node of the Proxmox cluster" in r.stderr
    assert vms(state) == {"9000": ("tmpl", "pve")}, "nothing is made before every host is known"
    # a run for the nodes on known hosts goes ahead
    r = subprocess.run([bash, str(out / "proxmox/deploy.sh"), "k8s-node1"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert vms(state)["9101"] == ("k8s-node1", "pve2")


def test_deploy_sh_to_another_host_needs_shared_disks(tmp_path):
    bash = need("bash")
    _, out = hosted_out(tmp_path)
    env, state = hosts_env(tmp_path, shared=())
    r = subprocess.run([bash, str(out / "proxmox/deploy.sh"), "k8s-node1"], capture_output=True, text=True, env=env)
    assert r.returncode != 0 and "can't clone to non-shared storage 'ceph'" in r.stderr
    assert "9101" not in vms(state)


def test_standin_hosts_enforces_its_rules(tmp_path):
    """Each rule of the stand-in, broken once."""
    env, state = hosts_env(tmp_path, shared=())

    def run(*cmd, node="pve"):
        return subprocess.run(list(cmd), capture_output=True, text=True, env={**env, "PVE_NODE": node})

    assert "does not exist" in run("qm", "status", "9000", node="pve2").stderr  # not this node's VM
    assert "no such cluster node 'pve9'" in run("qm", "clone", "9000", "9100", "--name", "a", "--target", "pve9").stderr
    assert "VM uses local storage" in run("qm", "clone", "9000", "9100", "--name", "a", "--target", "pve2").stderr
    assert "Could not resolve hostname pve9" in run("ssh", "root@pve9", "true").stderr
    # the remote shell parses the words again: an unquoted word with a space splits
    assert run("ssh", "root@pve2", "printf", "'%s|'", "a b").stdout == "a|b|"
    assert run("ssh", "root@pve2", "qm", "status", "9000").returncode == 2
    assert vms(state) == {"9000": ("tmpl", "pve")}


def test_rendered_readme_names_the_placed_nodes_and_shared_storage(tmp_path):
    _, out = hosted_out(tmp_path)
    text = (out / "README.md").read_text()
    assert "k8s-node1 on pve2, k8s-node2 on pve3." in text
    assert "disk storage ceph are shared storage" in " ".join(text.split())


def test_retire_names_the_vms_host(tmp_path):
    import yaml

    cluster_yaml = tmp_path / "c.yaml"
    cluster_yaml.write_text(placed(LAB.read_text()))
    r = run_bakery("retire", cluster_yaml, "k8s-node1", "--output", "json", "--out", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    (step,) = [s for s in yaml.safe_load(r.stdout)["steps"] if "Proxmox VM" in json.dumps(s)]
    assert "Proxmox VM 9101 on pve2, reached over ssh" in json.dumps(step)
    assert step["run"] == "./proxmox/destroy.sh k8s-node1"
