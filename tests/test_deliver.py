"""Delivery files: seed ISOs read back by xorriso, the VirtualBox and Proxmox scripts checked
by shellcheck and run by bash against stand-in VBoxManage/qm/pvesm that keep state, so
idempotency and the values that reach the hypervisor are checked where they are used."""
from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from bakery.deliver import handoff as deliver
from bakery.output.layout import images_dir
from bakery.output.writer import OutputFile, write_tree
from bakery.plan import image_plan, node_plans
from bakery.providers import virtualbox
from bakery.spec.pipeline import load_cluster

from conftest import LAB, need, net_convert, run_bakery


def lab(tmp_path, edit=None):
    text = LAB.read_text()
    if edit:
        text = edit(text)
    p = tmp_path / "cluster.yaml"
    p.write_text(text)
    cluster, _ = load_cluster(str(p))
    return cluster


def seed_files(cluster, *, macs=None, secret=True) -> list[OutputFile]:
    """Hand-made seeds, as firstboot would hand them over (network-config v2 matching a MAC
    when `macs` names one for the node)."""
    out = []
    for n in cluster.nodes:
        eth = {"addresses": [f"{n.address}/{cluster.network.node_cidr.prefixlen}"]}
        if macs and n.name in macs:
            eth["match"] = {"macaddress": macs[n.name]}
            eth["set-name"] = n.interface
        netcfg = yaml.safe_dump({"version": 2, "ethernets": {n.interface: eth}}).encode()
        out += [
            OutputFile(f"nodes/{n.name}/user-data", f"#cloud-config\nhostname: {n.name}\n".encode() + b"x" * 3000,
                       kind="cloud-init", node=n.name, role=n.role, secret=secret),
            OutputFile(f"nodes/{n.name}/meta-data", f"instance-id: {n.name}\n".encode(), kind="cloud-init",
                       node=n.name, role=n.role),
            OutputFile(f"nodes/{n.name}/network-config", netcfg, kind="cloud-init", node=n.name, role=n.role),
        ]
    return out


def delivery_files(cluster, seeds: list[OutputFile]) -> list[OutputFile]:
    """The delivery files of hand-made seeds, node by node as a render streams them: seed ISOs,
    the VirtualBox and Proxmox hand-off, README."""
    by_path = {f.path: f for f in seeds}
    out, nodes = [], []
    for np_ in node_plans(cluster):
        seed = {name: by_path[f"nodes/{np_.node.name}/{name}"] for name in deliver.SEED_FILES
                if f"nodes/{np_.node.name}/{name}" in by_path}
        out += deliver.node_files(cluster, np_, seed)
        nodes.append(deliver.node_delivery(cluster, np_, seed))
    return out + deliver.cluster_files(cluster, image_plan(cluster), nodes)


def by_path(files):
    return {f.path: f for f in files}


# --- seed ISO ------------------------------------------------------------------------------

def test_seed_iso_read_back_by_xorriso(tmp_path):
    xorriso = need("xorriso")
    cluster = lab(tmp_path)
    seeds = seed_files(cluster)
    files = by_path(delivery_files(cluster, seeds))
    for n in cluster.nodes:
        iso = tmp_path / f"{n.name}.iso"
        iso.write_bytes(files[f"nodes/{n.name}/seed.iso"].content)
        info = subprocess.run([xorriso, "-indev", str(iso), "-pvd_info"], capture_output=True, text=True,
                              check=True).stdout
        assert re.search(r"^Volume Id\s*:\s*CIDATA$", info, re.M), info
        dest = tmp_path / f"x-{n.name}"
        subprocess.run([xorriso, "-osirrox", "on", "-indev", str(iso), "-extract", "/", str(dest)],
                       capture_output=True, check=True)
        got = sorted(p.name for p in dest.iterdir())
        assert got == ["meta-data", "network-config", "user-data"]
        for name in got:
            assert (dest / name).read_bytes() == by_path(seeds)[f"nodes/{n.name}/{name}"].content


def test_seed_iso_joliet_names(tmp_path):
    """Joliet names are the lower-case file names (a reader that ignores Rock Ridge still
    finds user-data); read with pycdlib's reader."""
    import io

    import pycdlib

    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(deliver.seed_iso({"user-data": b"u", "meta-data": b"m"})))
    try:
        assert iso.has_joliet() and iso.has_rock_ridge()
        names = sorted(c.file_identifier().decode("utf-16_be") for c in iso.list_children(joliet_path="/")
                       if c.is_file())
        assert names == ["meta-data", "user-data"]
    finally:
        iso.close()


def test_seed_iso_is_byte_identical_across_renders_and_time_zones(tmp_path):
    files = {"user-data": b"#cloud-config\n", "meta-data": b"instance-id: a\n", "network-config": b"version: 2\n"}
    first = deliver.seed_iso(files)
    assert deliver.seed_iso(files) == first
    code = textwrap.dedent("""
        import sys
        from bakery.deliver.handoff import seed_iso
        sys.stdout.buffer.write(seed_iso({"user-data": b"#cloud-config\\n", "meta-data": b"instance-id: a\\n",
                                           "network-config": b"version: 2\\n"}))
    """)
    for tz in ("Asia/Kolkata", "America/St_Johns", "UTC"):
        other = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True,
                               env={**os.environ, "TZ": tz}, cwd=Path(__file__).parent.parent).stdout
        assert other == first, tz
    assert deliver.seed_iso({**files, "user-data": b"#cloud-config\nchanged\n"}) != first


def test_seed_iso_secret_mode_follows_user_data(tmp_path):
    cluster = lab(tmp_path)
    for secret, mode in ((True, 0o600), (False, 0o644)):
        seeds = seed_files(cluster, secret=secret)
        files = seeds + delivery_files(cluster, seeds)
        dest = tmp_path / f"out-{secret}"
        write_tree(dest, files)
        for n in cluster.nodes:
            st = (dest / "nodes" / n.name / "seed.iso").stat()
            assert stat.S_IMODE(st.st_mode) == mode
            snippet = dest / "proxmox" / "snippets" / f"lab_{n.name}-user.yaml"
            assert stat.S_IMODE(snippet.stat().st_mode) == mode


def test_no_iso_without_seed_files(tmp_path):
    cluster = lab(tmp_path)
    files = delivery_files(cluster, [])
    assert not [f for f in files if f.path.endswith("seed.iso")]


def test_kinds(tmp_path):
    cluster = lab(tmp_path)
    files = by_path(delivery_files(cluster, seed_files(cluster)))
    assert files["nodes/k8s-master/seed.iso"].kind == "seed"
    assert files["virtualbox/create-vms.sh"].kind == "virtualbox" and files["virtualbox/create-vms.sh"].executable
    assert files["proxmox/deploy.sh"].kind == "proxmox" and files["proxmox/deploy.sh"].executable
    assert files["proxmox/snippets/lab_k8s-node1-network.yaml"].kind == "proxmox"
    assert files["README.md"].kind == "docs"


def test_snippet_names_do_not_collide_across_clusters(tmp_path):
    """Issue 16: cluster lab's node a-b and cluster lab-a's node b both wrote lab-a-b-user.yaml to
    the one snippet storage (and lab-a-b-seed-*.iso to the ISO storage). Every name one cluster
    puts on Proxmox storage now differs from every name of the other's, each in the tree and in
    deploy.sh, and each survives pve-storage's file-name rules."""
    snippets, clusters = {}, {}
    for name, node in (("lab", "a-b"), ("lab-a", "b")):
        folder = tmp_path / name
        folder.mkdir()
        cluster = lab(folder, lambda t, name=name, node=node: t.replace("name: lab ", f"name: {name} ").replace(
            "name: k8s-node2,", f"name: {node},"))
        files = by_path(delivery_files(cluster, seed_files(cluster)))
        snippets[name] = {Path(p).name for p in files if p.startswith("proxmox/snippets/")}
        deploy = files["proxmox/deploy.sh"].content.decode()
        assert len(snippets[name]) == 3 * 3 and all(f"snippets/{s}" in deploy for s in snippets[name])
        clusters[name] = cluster
    assert not snippets["lab"] & snippets["lab-a"], snippets["lab"] & snippets["lab-a"]
    for name, cluster in clusters.items():
        isos = {deliver.volume_stem(cluster, n.name) + "-seed-0123456789ab.iso" for n in cluster.nodes}
        for volume in snippets[name] | isos:
            # PVE::Storage::normalize_content_filename keeps [a-zA-Z0-9_.-]; a snippet has no '/'
            assert re.fullmatch(r"[a-zA-Z0-9_.-]+", volume) and volume.startswith(f"{name}_"), volume


def test_builders_select_hypervisor_files(tmp_path):
    cluster = lab(tmp_path, lambda t: t.replace("builders: [virtualbox-iso, proxmox-iso, qemu]", "builders: [qemu]"))
    paths = set(by_path(delivery_files(cluster, seed_files(cluster))))
    assert not any(p.startswith(("virtualbox/", "proxmox/")) for p in paths)
    assert "nodes/k8s-node2/seed.iso" in paths


# --- MACs ------------------------------------------------------------------------------------

def test_stable_mac():
    a = deliver.stable_mac("lab", "k8s-master")
    assert re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", a)
    first = int(a[:2], 16)
    assert first & 0b10, "locally administered"
    assert not first & 0b1, "unicast"
    assert deliver.stable_mac("lab", "k8s-master") == a
    assert len({deliver.stable_mac(c, n) for c in ("lab", "prod") for n in ("a", "b", "c")}) == 6


# --- VirtualBox ------------------------------------------------------------------------------

FAKE_VBOXMANAGE = r'''#!/usr/bin/env python3
"""Stand-in VBoxManage keeping state in $VBOX_STATE; logs every call."""
import json, os, sys
state_file = os.path.join(os.environ["VBOX_STATE"], "state.json")
state = json.load(open(state_file)) if os.path.exists(state_file) else {"hostonly": [], "vms": {}}
args = sys.argv[1:]
with open(os.path.join(os.environ["VBOX_STATE"], "log"), "a") as log:
    log.write(json.dumps(args) + "\n")
def save():
    json.dump(state, open(state_file, "w"))
cmd = args[0]
if args[:2] == ["list", "hostonlyifs"]:
    for name in state["hostonly"]:
        print(f"Name:            {name}\nGUID:            x\nIPAddress:       0.0.0.0\n")
elif args[:2] == ["hostonlyif", "create"]:
    name = f"vboxnet{len(state['hostonly'])}"
    state["hostonly"].append(name); save()
    print("0%...100%"); print(f"Interface '{name}' was successfully created")
elif cmd == "showvminfo":
    vm = state["vms"].get(args[1])
    if vm is None:
        print(f"VBoxManage: error: Could not find a registered machine named '{args[1]}'", file=sys.stderr)
        sys.exit(1)
    if "--machinereadable" in args:
        print(f'VMState="{"running" if vm.get("running") else "poweroff"}"')
        # VirtualBox releases the session lock a moment after a poweroff: one look sees it locked
        print(f'SessionState="{"Locked" if vm.get("running") or vm.get("lockedLooks") else "Unlocked"}"')
        if vm.get("lockedLooks"):
            vm["lockedLooks"] -= 1; save()
        for i, (name, typ) in enumerate(vm["controllers"]):
            print(f'storagecontrollername{i}="{name}"'); print(f'storagecontrollertype{i}="{typ}"')
elif cmd == "controlvm":
    # VBoxManage controlvm <vm> poweroff: the VM must be registered and running
    vm = state["vms"].get(args[1]) if len(args) > 2 else None
    if vm is None or args[2] != "poweroff":
        print(f"VBoxManage: error: Could not find a registered machine named '{args[1:2]}'", file=sys.stderr)
        sys.exit(1)
    if not vm.get("running"):
        print(f"VBoxManage: error: Machine '{args[1]}' is not currently running", file=sys.stderr)
        sys.exit(1)
    vm["running"] = False; vm["lockedLooks"] = 1; save()
elif cmd == "unregistervm":
    # VBoxManage unregistervm <vm> [--delete]: refused while the VM runs (its session is locked)
    vm = state["vms"].get(args[1]) if len(args) > 1 else None
    if vm is None or any(a not in ("--delete", "--delete-all") for a in args[2:]):
        print(f"VBoxManage: error: Could not find a registered machine named '{args[1:2]}'", file=sys.stderr)
        sys.exit(1)
    if vm.get("running") or vm.get("lockedLooks"):
        print(f"VBoxManage: error: Cannot unregister the machine '{args[1]}' while it is locked", file=sys.stderr)
        sys.exit(1)
    del state["vms"][args[1]]; save()
elif cmd == "modifyvm":
    # VBoxManage's contract for the options create-vms.sh uses: a registered VM, known
    # options, each with a valid value (on/off switches take exactly on or off).
    vm = state["vms"].get(args[1]) if len(args) > 1 else None
    if vm is None:
        print(f"VBoxManage: error: Could not find a registered machine named '{args[1:2]}'", file=sys.stderr)
        sys.exit(1)
    nic = {"none", "null", "nat", "natnetwork", "bridged", "intnet", "hostonly", "generic"}
    onoff = {"on", "off"}
    valid = {"--nic1": nic.__contains__, "--nic2": nic.__contains__, "--hostonlyadapter2": bool,
             "--macaddress2": lambda v: v == "auto" or (len(v) == 12 and all(c in "0123456789ABCDEFabcdef" for c in v)),
             "--cableconnected2": onoff.__contains__, "--rtcuseutc": onoff.__contains__}
    opts = args[2:]
    if len(opts) % 2:
        print(f"VBoxManage: error: Missing argument to '{opts[-1]}'", file=sys.stderr)
        sys.exit(1)
    for key, val in zip(opts[::2], opts[1::2]):
        if key not in valid:
            print(f"VBoxManage: error: Invalid parameter '{key}'", file=sys.stderr)
            sys.exit(1)
        if not valid[key](val):
            print(f"VBoxManage: error: Invalid {key} argument '{val}'", file=sys.stderr)
            sys.exit(1)
        vm.setdefault("settings", {})[key.lstrip("-")] = val
    save()
elif cmd == "import":
    name = args[args.index("--vmname") + 1]
    state["vms"][name] = {"controllers": [["SATA Controller", "IntelAhci"]], "running": False}; save()
elif cmd == "storagectl":
    state["vms"][args[1]]["controllers"].append([args[args.index("--name") + 1], "PIIX4"]); save()
elif cmd == "startvm":
    state["vms"][args[1]]["running"] = True; save()
'''


def vbox_env(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    fake = bindir / "VBoxManage"
    fake.write_text(FAKE_VBOXMANAGE)
    fake.chmod(0o755)
    state = tmp_path / "vbox"
    state.mkdir(exist_ok=True)
    return {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "VBOX_STATE": str(state)}, state


def calls(state: Path) -> list[list[str]]:
    return [json.loads(line) for line in (state / "log").read_text().splitlines()]


def write_out(tmp_path, cluster, seeds):
    files = seeds + delivery_files(cluster, seeds)
    out = tmp_path / "outputs" / cluster.name
    write_tree(out, files)
    return out


@pytest.mark.parametrize("script", ["virtualbox/create-vms.sh", "virtualbox/destroy-vms.sh", "proxmox/deploy.sh",
                                    "proxmox/destroy.sh"])
def test_hand_off_scripts_pass_shellcheck(tmp_path, script):
    shellcheck = need("shellcheck")
    cluster = lab(tmp_path)
    out = write_out(tmp_path, cluster, seed_files(cluster))
    r = subprocess.run([shellcheck, "-s", "bash", str(out / script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


def test_create_vms_runs_and_is_idempotent(tmp_path):
    bash = need("bash")
    mac = "08:00:27:aa:bb:cc"
    cluster = lab(tmp_path, lambda t: t.replace("address: 192.168.56.31}", f"address: 192.168.56.31, mac: '{mac}'}}"))
    out = write_out(tmp_path, cluster, seed_files(cluster, macs={"k8s-node1": mac}))
    ova = tmp_path / "image.ova"
    ova.write_bytes(b"ova")
    env, state = vbox_env(tmp_path)
    r = subprocess.run([bash, str(out / "virtualbox/create-vms.sh"), str(ova)], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    log = calls(state)
    # the host-only network is created with the gateway address
    assert ["hostonlyif", "ipconfig", "vboxnet0", "--ip", "192.168.56.1", "--netmask", "255.255.255.0"] in log
    imports = [c for c in log if c[0] == "import"]
    assert [c[c.index("--vmname") + 1] for c in imports] == ["k8s-master", "k8s-node1", "k8s-node2"]
    assert all(c[1] == str(ova) for c in imports)
    modify = {c[1]: c for c in log if c[0] == "modifyvm"}
    for n in cluster.nodes:
        c = modify[n.name]
        assert c[c.index("--nic1") + 1] == "nat"
        assert c[c.index("--nic2") + 1] == "hostonly" and c[c.index("--hostonlyadapter2") + 1] == "vboxnet0"
        want = mac if n.name == "k8s-node1" else deliver.stable_mac("lab", n.name)
        assert c[c.index("--macaddress2") + 1] == want.replace(":", "").upper()
    # the stand-in's state: every guest keeps its RTC in UTC
    vms = json.loads((state / "state.json").read_text())["vms"]
    assert {n.name: vms[n.name]["settings"].get("rtcuseutc") for n in cluster.nodes} == {
        n.name: "on" for n in cluster.nodes}
    attach = {c[1]: c for c in log if c[0] == "storageattach"}
    for n in cluster.nodes:
        medium = Path(attach[n.name][attach[n.name].index("--medium") + 1])
        assert medium == out / "nodes" / n.name / "seed.iso" and medium.is_file()
        assert attach[n.name][attach[n.name].index("--storagectl") + 1] == "IDE"
    assert [c[1] for c in log if c[0] == "startvm"] == ["k8s-master", "k8s-node1", "k8s-node2"]
    assert all(c[c.index("--type") + 1] == "headless" for c in log if c[0] == "startvm")

    (state / "log").unlink()
    r = subprocess.run([bash, str(out / "virtualbox/create-vms.sh"), str(ova)], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    again = calls(state)
    assert not [c for c in again if c[0] in ("import", "modifyvm", "startvm", "hostonlyif")], again
    assert "k8s-node2: exists, left alone" in r.stdout


def test_vboxmanage_stand_in_enforces_modifyvm(tmp_path):
    env, state = vbox_env(tmp_path)
    vbox = str(tmp_path / "bin" / "VBoxManage")

    def run(*args):
        return subprocess.run([vbox, *args], capture_output=True, text=True, env=env).returncode
    assert run("modifyvm", "ghost", "--rtcuseutc", "on") == 1, "no such VM"
    assert run("import", "x.ova", "--vsys", "0", "--vmname", "vm") == 0
    assert run("modifyvm", "vm", "--rtcuseutc", "on") == 0
    assert run("modifyvm", "vm", "--rtcuseutc", "UTC") == 1, "on|off only"
    assert run("modifyvm", "vm", "--rtc-time-base", "on") == 1, "unknown option"
    assert run("modifyvm", "vm", "--nic1", "natt") == 1
    assert run("modifyvm", "vm", "--macaddress2", "08:00:27:aa:bb:cc") == 1, "VBoxManage takes 12 hex digits"
    assert run("modifyvm", "vm", "--cableconnected2") == 1
    vm = json.loads((state / "state.json").read_text())["vms"]["vm"]
    assert vm["settings"] == {"rtcuseutc": "on"}


def test_create_vms_without_ova_fails_clearly(tmp_path):
    bash = need("bash")
    cluster = lab(tmp_path)
    out = write_out(tmp_path, cluster, seed_files(cluster))
    env, state = vbox_env(tmp_path)
    r = subprocess.run([bash, str(out / "virtualbox/create-vms.sh"), str(tmp_path / "none.ova")],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "bakery build" in r.stderr


def test_create_vms_quotes_values(tmp_path):
    cluster = lab(tmp_path)
    files = by_path(delivery_files(cluster, seed_files(cluster)))
    text = files["virtualbox/create-vms.sh"].content.decode()
    assert "host_only=vboxnet0\n" in text and "host_address=192.168.56.1\n" in text


# --- Proxmox ---------------------------------------------------------------------------------

FAKE_PVE = r'''#!/usr/bin/env python3
"""Stand-in qm / pvesm keeping state in $PVE_STATE; logs every call."""
import json, os, sys
root = os.environ["PVE_STATE"]
state_file = os.path.join(root, "state.json")
state = json.load(open(state_file)) if os.path.exists(state_file) else {"vms": {"9000": {"name": "tmpl", "cfg": ["scsi0: local-lvm:base-9000-disk-0"]}}}
tool, args = os.path.basename(sys.argv[0]), sys.argv[1:]
with open(os.path.join(root, "log"), "a") as log:
    log.write(json.dumps([tool] + args) + "\n")
def save():
    json.dump(state, open(state_file, "w"))
if tool == "pvesm":
    if args[0] == "status":
        print("Name Type Status Total Used Available %")
        print("local dir active 1 1 1 1%")
    elif args[0] == "path":
        storage, vol = args[1].split(":", 1)
        if not vol.startswith("snippets/") or "/" in vol[len("snippets/"):] or vol == "snippets/":
            # pve-storage's parse_volname: snippets/<a name without '/'>
            print(f"unable to parse directory volume name '{vol}'", file=sys.stderr)
            sys.exit(255)
        print(os.path.join(root, "storage", storage, vol))
elif tool == "qm":
    cmd, vmid = args[0], args[1]
    fail = os.path.join(root, "fail")  # a test's fault: this qm command fails as Proxmox would
    if os.path.exists(fail) and open(fail).read() == cmd:
        print(f"{cmd} failed: got timeout", file=sys.stderr)
        sys.exit(255)
    vm = state["vms"].get(vmid)
    if cmd in ("status", "config", "set", "start", "stop", "destroy") and vm is None:
        print(f"Configuration file 'nodes/pve/qemu-server/{vmid}.conf' does not exist", file=sys.stderr)
        sys.exit(2)
    if cmd == "status":
        print("status: running" if vm.get("running") else "status: stopped")
    elif cmd == "start":
        vm["running"] = True
    elif cmd == "stop":
        vm["running"] = False
    elif cmd == "destroy":
        # qm destroy <vmid> [--destroy-unreferenced-disks <boolean>] [--purge <boolean>] [--skiplock <boolean>];
        # a running VM is refused ("VM is running - destroy failed")
        opts = args[2:]
        known = {"--destroy-unreferenced-disks", "--purge", "--skiplock"}
        if len(opts) % 2 or any(k not in known or v not in ("0", "1") for k, v in zip(opts[::2], opts[1::2])):
            print(f"400 unable to parse option {opts}", file=sys.stderr)
            sys.exit(255)
        if vm.get("running"):
            print("VM is running - destroy failed", file=sys.stderr)
            sys.exit(255)
        del state["vms"][vmid]
    elif cmd == "config":
        print(f"name: {vm['name']}"); print("\n".join(vm["cfg"]))
    elif cmd == "clone":
        state["vms"][args[2]] = {"name": args[args.index("--name") + 1], "cfg": list(state["vms"][vmid]["cfg"])}
    elif cmd == "set":
        for i in range(2, len(args), 2):
            vm["cfg"].append(f"{args[i][2:]}: {args[i + 1]}")
    save()
'''


def pve_env(tmp_path):
    bindir = tmp_path / "pvebin"
    bindir.mkdir(exist_ok=True)
    for tool in ("qm", "pvesm"):
        (bindir / tool).write_text(FAKE_PVE)
        (bindir / tool).chmod(0o755)
    state = tmp_path / "pve"
    state.mkdir(exist_ok=True)
    return {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "PVE_STATE": str(state)}, state


def test_deploy_sh_runs_and_is_idempotent(tmp_path):
    bash = need("bash")
    cluster = lab(tmp_path)
    seeds = seed_files(cluster)
    out = write_out(tmp_path, cluster, seeds)
    env, state = pve_env(tmp_path)
    r = subprocess.run([bash, str(out / "proxmox/deploy.sh")], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    log = calls(state)
    clones = [c for c in log if c[:2] == ["qm", "clone"]]
    assert [(c[2], c[3], c[c.index("--name") + 1]) for c in clones] == [
        ("9000", "9100", "k8s-master"), ("9000", "9101", "k8s-node1"), ("9000", "9102", "k8s-node2")]
    sets = [c for c in log if c[:2] == ["qm", "set"] and "--cicustom" in c]
    for n, c in zip(cluster.nodes, sets, strict=True):
        cicustom = dict(kv.split("=", 1) for kv in c[c.index("--cicustom") + 1].split(","))
        assert cicustom == {"user": f"local:snippets/lab_{n.name}-user.yaml",
                            "network": f"local:snippets/lab_{n.name}-network.yaml",
                            "meta": f"local:snippets/lab_{n.name}-meta.yaml"}
        # the snippets the VM will read: the node's user-data byte for byte; a network-config
        # for the one NIC the clone has, matched by the MAC set on net0
        net0 = c[c.index("--net0") + 1]
        assert net0 == f"virtio={deliver.stable_mac('lab', n.name).upper()},bridge=vmbr0"
        snippets = state / "storage" / "local" / "snippets"
        assert (snippets / f"lab_{n.name}-user.yaml").read_bytes() == by_path(seeds)[f"nodes/{n.name}/user-data"].content
        network = yaml.safe_load((snippets / f"lab_{n.name}-network.yaml").read_text())["network"]
        assert [e["match"] for e in network["ethernets"].values()] == [{"macaddress": deliver.stable_mac("lab", n.name)}]
        meta = yaml.safe_load((snippets / f"lab_{n.name}-meta.yaml").read_text())
        assert meta["local-hostname"] == n.name and meta["instance-id"].startswith(f"lab-{n.name}-")
        for part in ("user", "network", "meta"):
            assert stat.S_IMODE((snippets / f"lab_{n.name}-{part}.yaml").stat().st_mode) == 0o600
        assert c[c.index("--memory") + 1] == str(n.memory_mib) and c[c.index("--cores") + 1] == str(n.cpus)
    # a cloud-init drive is added because the template has none
    assert sum(1 for c in log if c[:2] == ["qm", "set"] and "--ide2" in c) == 3
    assert [c[2] for c in log if c[:2] == ["qm", "start"]] == ["9100", "9101", "9102"]

    (state / "log").unlink()
    r = subprocess.run([bash, str(out / "proxmox/deploy.sh")], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert not [c for c in calls(state) if c[:2] in (["qm", "clone"], ["qm", "start"], ["qm", "set"])]
    assert "k8s-node1: VM 9101 exists" in r.stdout


def proxmox_nic_is_configured(network_config: Path, mac: str, address: str, gateway: str, tmp: Path) -> None:
    """What cloud-init makes of a Proxmox seed's network-config, on a clone whose only NIC
    (net0, virtio) has `mac` and the kernel's name ens18: the node address lands on that
    NIC, and nothing is configured for a NIC the clone does not have."""
    mac = mac.lower()
    netplan = yaml.safe_load((net_convert(network_config, tmp / "np", "ubuntu", "netplan")
                              / "etc/netplan/50-cloud-init.yaml").read_text())["network"]
    (eth,) = netplan["ethernets"].values()  # a Proxmox clone has one NIC
    assert eth["match"] in ({"macaddress": mac}, {"name": "ens18"}), eth["match"]
    assert eth["addresses"] == [address]
    assert [r["via"] for r in eth.get("routes", []) if r["to"] in ("0.0.0.0/0", "default")] == [gateway]
    nd = net_convert(network_config, tmp / "nd", "debian", "networkd")
    (unit,) = sorted((nd / "etc/systemd/network").glob("*.network"))
    text = unit.read_text()
    assert f"MACAddress={mac}" in text.splitlines() or "Name=ens18" in text.splitlines(), text
    assert f"Address={address}" in text.splitlines()


def test_proxmox_seed_of_a_virtualbox_and_proxmox_cluster_matches_the_proxmox_nic(renders, tmp_path):
    """The lab bakes for VirtualBox and Proxmox: deploy.sh's clones get a network-config that
    configures the NIC deploy.sh creates (net0, virtio, the MAC it sets), not VirtualBox's
    enp0s8/enp0s3; VirtualBox keeps its own."""
    bash = need("bash")
    data = yaml.safe_load(LAB.read_text())
    assert {"virtualbox-iso", "proxmox-iso"} <= set(data["spec"]["image"]["builders"])
    out = renders.copy(renders.example("lab"), tmp_path / "out")  # deploy.sh runs from it
    env, state = pve_env(tmp_path)
    r = subprocess.run([bash, str(out / "proxmox/deploy.sh")], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    sets = {c[2]: c for c in calls(state) if c[:2] == ["qm", "set"] and "--net0" in c}
    gateway = data["spec"]["network"]["gateway"]
    for node in data["spec"]["nodes"]:
        (c,) = [c for c in sets.values()
                if c[c.index("--cicustom") + 1].startswith(f"user=local:snippets/lab_{node['name']}-")]
        model_mac = re.fullmatch(r"virtio=([0-9A-F:]{17}),bridge=vmbr0", c[c.index("--net0") + 1]).group(1)
        cicustom = dict(kv.split("=", 1) for kv in c[c.index("--cicustom") + 1].split(","))
        installed = state / "storage" / "local" / cicustom["network"].split(":", 1)[1]
        address = f"{node['address']}/{data['spec']['network']['nodeCidr'].split('/')[1]}"
        proxmox_nic_is_configured(installed, model_mac, address, gateway, tmp_path / f"px-{node['name']}")
        # `bakery deploy proxmox` attaches the same seed, made into an ISO from the snippets
        if shutil.which("xorriso"):
            from bakery.deliver.handoff import proxmox_seed_iso
            from bakery.spec.pipeline import load_cluster

            dest = tmp_path / f"iso-{node['name']}"
            iso = tmp_path / f"{node['name']}.iso"
            iso.write_bytes(proxmox_seed_iso(load_cluster(str(LAB))[0], out, node["name"]))
            subprocess.run(["xorriso", "-osirrox", "on", "-indev", str(iso),
                            "-extract", "/", str(dest)], capture_output=True, check=True)
            for name, part in (("network-config", "network"), ("meta-data", "meta"), ("user-data", "user")):
                snippet = state / "storage" / "local" / cicustom[part].split(":", 1)[1]
                assert (dest / name).read_bytes() == snippet.read_bytes()
        # VirtualBox's seed still names its own NICs: host-only enp0s8 (static), NAT enp0s3 (DHCP)
        vbox_dir = net_convert(out / "nodes" / node["name"] / "network-config", tmp_path / f"vb-{node['name']}",
                               "ubuntu", "netplan")
        vbox = yaml.safe_load((vbox_dir / "etc/netplan/50-cloud-init.yaml").read_text())
        eths = vbox["network"]["ethernets"]
        assert eths["enp0s8"]["match"] == {"name": "enp0s8"} and eths["enp0s3"]["dhcp4"] is True


def test_deploy_sh_refuses_a_foreign_vm(tmp_path):
    bash = need("bash")
    cluster = lab(tmp_path)
    out = write_out(tmp_path, cluster, seed_files(cluster))
    env, state = pve_env(tmp_path)
    import json

    (state / "state.json").write_text(json.dumps({"vms": {"9000": {"name": "t", "cfg": []},
                                                          "9101": {"name": "someone-else", "cfg": []}}}))
    r = subprocess.run([bash, str(out / "proxmox/deploy.sh")], capture_output=True, text=True, env=env)
    assert r.returncode == 1
    assert "VM 9101 exists and is 'someone-else'" in r.stderr
    assert [c[2] for c in calls(state) if c[:2] == ["qm", "clone"]] == ["9000", "9000"]


def test_vm_ids_and_bridge_from_cluster_yaml(tmp_path):
    def edit(t):
        t = t.replace("    builders: [virtualbox-iso, proxmox-iso, qemu]",
                      "    builders: [proxmox-iso]\n    proxmox: {bridge: vmbr7, templateVmId: 700, snippetStorage: cephfs}")
        return t.replace("{name: k8s-node2, role: worker, address: 192.168.56.32}",
                         "{name: k8s-node2, role: worker, address: 192.168.56.32, vmId: 4242}")
    cluster = lab(tmp_path, edit)
    files = by_path(delivery_files(cluster, seed_files(cluster)))
    text = files["proxmox/deploy.sh"].content.decode()
    assert "template=700\n" in text and "bridge=vmbr7\n" in text
    assert re.search(r"^  create_vm k8s-node2 4242 ", text, re.M)
    assert "user=cephfs:snippets/lab_k8s-node2-user.yaml" in text
    assert "virtualbox/create-vms.sh" not in files


# --- through bakery render -----------------------------------------------------------------

def test_render_writes_delivery_files(renders, tmp_path):
    out = renders.example("lab")
    assert (out / "README.md").is_file() and (out / "proxmox/deploy.sh").stat().st_mode & 0o111
    import json

    manifest = json.loads((out / "manifest.json").read_text())
    kinds = {e["path"]: e["kind"] for e in manifest["files"]}
    assert kinds["virtualbox/create-vms.sh"] == "virtualbox" and kinds["README.md"] == "docs"
    for n in ("k8s-master", "k8s-node1", "k8s-node2"):
        if not (out / "nodes" / n / "user-data").exists():
            continue  # firstboot not there yet
        assert kinds[f"nodes/{n}/seed.iso"] == "seed"
        if shutil.which("xorriso"):  # the seed holds exactly the files beside it
            dest = tmp_path / f"x-{n}"
            subprocess.run(["xorriso", "-osirrox", "on", "-indev", str(out / "nodes" / n / "seed.iso"),
                            "-extract", "/", str(dest)], capture_output=True, check=True)
            assert sorted(p.name for p in dest.iterdir()) == ["meta-data", "network-config", "user-data"]
            for p in dest.iterdir():
                assert p.read_bytes() == (out / "nodes" / n / p.name).read_bytes()
        user_mode = stat.S_IMODE((out / "nodes" / n / "user-data").stat().st_mode)
        assert stat.S_IMODE((out / "nodes" / n / "seed.iso").stat().st_mode) == user_mode
    r = run_bakery("render", LAB, "--out", out, "--check")
    assert r.returncode == 0, r.stdout + r.stderr


# --- examples/ci ---------------------------------------------------------------------------

CI = Path(__file__).resolve().parent.parent / "examples" / "ci" / "github-actions.yml"


def test_ci_workflow_shape():
    wf = yaml.safe_load(CI.read_text())
    steps = {s.get("name") or s.get("uses") or s["run"][:20]: s for s in wf["jobs"]["check"]["steps"]}
    runs = [s.get("run", "") for s in wf["jobs"]["check"]["steps"]]
    assert any("bakery validate" in r for r in runs) and any("bakery render --check" in r for r in runs)
    bake = wf["jobs"]["bake-qemu"]
    cache = next(s for s in bake["steps"] if str(s.get("uses", "")).startswith("actions/cache"))
    assert cache["with"]["key"].endswith("${{ needs.check.outputs.fingerprint }}")
    assert any("bakery build" in s.get("run", "") and "--only qemu" in s["run"] for s in bake["steps"])
    assert "Bake fingerprint" in steps


def pip_requirements(script: str) -> list[str]:
    """The requirement arguments of every `pip install` in a shell script (options and
    local paths left out)."""
    import shlex

    reqs = []
    for line in script.splitlines():
        words = shlex.split(line, comments=True)
        for i in range(len(words) - 1):
            if words[i] in ("pip", "pip3") and words[i + 1] == "install" or \
                    words[i].endswith("python") and words[i + 1:i + 4] == ["-m", "pip", "install"]:
                args = words[i + 2:] if words[i + 1] == "install" else words[i + 4:]
                for a in args:
                    if a in ("&&", "||", ";", "|"):
                        break
                    if not a.startswith(("-", ".", "/")):
                        reqs.append(a)
    return reqs


def test_ci_workflow_installs_this_project_at_its_version():
    """`pip install bakery` installs someone else's project: every pip install in the example
    names this project's distribution (pyproject.toml) at this release (the version that
    renders what render --check compares)."""
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    from bakery import __version__

    root = CI.parent.parent.parent
    dist = tomllib.loads((root / "pyproject.toml").read_text())["project"]["name"]
    assert canonicalize_name(dist) != "bakery"
    wf = yaml.safe_load(CI.read_text())
    reqs = [r for job in wf["jobs"].values() for s in job["steps"] for r in pip_requirements(s.get("run", ""))]
    assert len(reqs) == 2  # one per job that runs bakery
    for text in reqs:
        req = Requirement(text)
        assert canonicalize_name(req.name) == canonicalize_name(dist), text
        assert str(req.specifier) == f"=={__version__}", text
    # the README's install instructions too
    readme_reqs = pip_requirements("\n".join(re.findall(r"`([^`]*pip install[^`]*)`", (root / "README.md").read_text())
                                             + re.findall(r"^pip install.*$", (root / "README.md").read_text(), re.MULTILINE)))
    assert readme_reqs and all(canonicalize_name(Requirement(r).name) == canonicalize_name(dist) for r in readme_reqs)
    assert pip_requirements("pip install bakery && python -m pip install -e '.[test]'") == ["bakery"]  # the helper sees it


def test_ci_workflow_scripts_pass_shellcheck_and_read_the_fingerprint(renders, tmp_path):
    """Each run: script through shellcheck (GitHub expressions stood in by a word), and the
    fingerprint step run for real with jq against a rendered manifest.json."""
    shellcheck = need("shellcheck")
    wf = yaml.safe_load(CI.read_text())
    steps = []
    for job_name, job in wf["jobs"].items():
        for i, step in enumerate(job["steps"]):
            if "run" not in step or step["run"].lstrip().startswith("python - "):
                continue
            script = "#!/usr/bin/env bash\nset -euo pipefail\n" + re.sub(r"\$\{\{[^}]*\}\}", "EXPR", step["run"])
            steps.append(tmp_path / f"{job_name}-{i}.sh")  # shellcheck's findings name the file
            steps[-1].write_text(script)
    assert steps
    # one run checks each file on its own; SC2153/SC2154: the variables come from the workflow's env:
    r = subprocess.run([shellcheck, "-e", "SC2153,SC2154", *map(str, steps)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout
    need("jq")
    (tmp_path / "w" / "outputs").mkdir(parents=True)
    renders.copy(renders.example("lab"), tmp_path / "w" / "outputs" / "lab")
    (tmp_path / "w" / "cluster.yaml").write_text(LAB.read_text())
    fp_step = next(s for s in wf["jobs"]["check"]["steps"] if s.get("name") == "Bake fingerprint")
    out_file = tmp_path / "gh-output"
    r = subprocess.run(["bash", "-euo", "pipefail", "-c", fp_step["run"]], cwd=tmp_path / "w", capture_output=True,
                       text=True, env={**os.environ, "CLUSTER": "cluster.yaml", "GITHUB_OUTPUT": str(out_file)})
    assert r.returncode == 0, r.stderr
    cluster, _ = load_cluster(str(LAB))
    assert dict(ln.split("=", 1) for ln in out_file.read_text().splitlines()) == {
        "cluster": "lab", "fingerprint": image_plan(cluster).fingerprint}


def test_create_vms_default_ova_is_where_bakery_build_puts_it(tmp_path):
    bash = need("bash")
    cluster = lab(tmp_path)
    out = write_out(tmp_path, cluster, seed_files(cluster))
    ova = images_dir(out) / virtualbox.ova_name(image_plan(cluster))
    ova.parent.mkdir(parents=True)
    ova.write_bytes(b"ova")
    env, state = vbox_env(tmp_path)
    r = subprocess.run([bash, str(out / "virtualbox/create-vms.sh")], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert {c[1] for c in calls(state) if c[0] == "import"} == {str(ova)}


# --- per-node hand-off (issue 17): create and destroy the VMs of the nodes named --------------

def test_create_and_destroy_vms_of_the_nodes_named(tmp_path):
    bash = need("bash")
    cluster = lab(tmp_path)
    out = write_out(tmp_path, cluster, seed_files(cluster))
    ova = tmp_path / "image.ova"
    ova.write_bytes(b"ova")
    env, state = vbox_env(tmp_path)

    def run(script, *args):
        return subprocess.run([bash, str(out / "virtualbox" / script), *map(str, args)], capture_output=True,
                              text=True, env=env)

    def vms():
        return sorted(json.loads((state / "state.json").read_text())["vms"])

    r = run("create-vms.sh", "--ova", ova, "k8s-node2")
    assert r.returncode == 0, r.stderr
    assert vms() == ["k8s-node2"]
    r = run("create-vms.sh", "k8s-node1", "--ova", ova)
    assert r.returncode == 0 and vms() == ["k8s-node1", "k8s-node2"]
    # an unknown node stops the run before anything is done
    r = run("create-vms.sh", "--ova", ova, "k8s-master", "nope")
    assert r.returncode == 2 and "nope is not a node of cluster lab" in r.stderr and vms() == ["k8s-node1", "k8s-node2"]
    r = run("destroy-vms.sh", "k8s-node1")
    assert r.returncode == 0, r.stderr
    assert vms() == ["k8s-node2"] and "k8s-node1: destroyed" in r.stdout
    log = calls(state)
    assert ["controlvm", "k8s-node1", "poweroff"] in log and ["unregistervm", "k8s-node1", "--delete"] in log
    r = run("destroy-vms.sh", "k8s-node1")  # again: nothing to do
    assert r.returncode == 0 and "k8s-node1: no such VM, nothing to do" in r.stdout
    r = run("destroy-vms.sh", "nope")
    assert r.returncode == 2 and vms() == ["k8s-node2"]
    r = run("destroy-vms.sh")  # every node
    assert r.returncode == 0 and vms() == []


def test_deploy_and_destroy_proxmox_vms_of_the_nodes_named(tmp_path):
    bash = need("bash")
    cluster = lab(tmp_path)
    out = write_out(tmp_path, cluster, seed_files(cluster))
    env, state = pve_env(tmp_path)
    snippets = state / "storage" / "local" / "snippets"

    def run(script, *args):
        return subprocess.run([bash, str(out / "proxmox" / script), *args], capture_output=True, text=True, env=env)

    def vms():
        return {vmid: vm["name"] for vmid, vm in json.loads((state / "state.json").read_text())["vms"].items()}

    r = run("deploy.sh", "k8s-node1")
    assert r.returncode == 0, r.stderr
    assert vms() == {"9000": "tmpl", "9101": "k8s-node1"}
    assert sorted(p.name for p in snippets.iterdir()) == [f"lab_k8s-node1-{p}.yaml" for p in ("meta", "network", "user")]
    r = run("deploy.sh", "k8s-node1", "bogus")
    assert r.returncode == 2 and "bogus is not a node" in r.stderr
    r = run("destroy.sh", "k8s-node1")
    assert r.returncode == 0, r.stderr
    assert vms() == {"9000": "tmpl"} and not list(snippets.iterdir())
    log = calls(state)
    assert ["qm", "stop", "9101"] in log
    assert ["qm", "destroy", "9101", "--purge", "1", "--destroy-unreferenced-disks", "1"] in log
    r = run("destroy.sh", "k8s-node1")
    assert r.returncode == 0 and "no VM 9101, nothing to do" in r.stdout
    # a failed stop or destroy is an error, and the node's snippets stay
    assert run("deploy.sh", "k8s-node1").returncode == 0
    (state / "fail").write_text("destroy")
    r = run("destroy.sh", "k8s-node1")
    assert r.returncode == 1 and "was not destroyed; its snippets are kept" in r.stderr and "destroyed\n" not in r.stdout
    assert "9101" in vms() and len(list(snippets.iterdir())) == 3
    st = json.loads((state / "state.json").read_text())
    st["vms"]["9101"]["running"] = True
    (state / "state.json").write_text(json.dumps(st))
    (state / "fail").write_text("stop")
    r = run("destroy.sh", "k8s-node1")
    assert r.returncode == 1 and "did not stop; not destroyed" in r.stderr and "9101" in vms()
    (state / "fail").unlink()
    # a VM id that holds another VM is left alone
    (state / "state.json").write_text(json.dumps(
        {"vms": {"9000": {"name": "tmpl", "cfg": []}, "9102": {"name": "database", "cfg": []}}}))
    r = run("destroy.sh", "k8s-node2")
    assert r.returncode == 1 and "is 'database', not k8s-node2; left alone" in r.stderr and "9102" in vms()
