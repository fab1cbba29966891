"""`bakery deploy proxmox` against a stand-in Proxmox VE API: a real HTTPS server on
127.0.0.1 in a thread, speaking the API's paths and forms (token header, form-encoded POSTs,
multipart upload, tasks by UPID that run for a while, {"data": ...} bodies), so proxmoxer and
requests do their real work. Paths and parameters as in the Proxmox VE API viewer:
  GET  /nodes/{node}/qemu                       list VMs
  POST /nodes/{node}/qemu/{vmid}/clone          newid, name, full, storage -> UPID
  GET  /nodes/{node}/qemu/{vmid}/config         current config
  POST /nodes/{node}/qemu/{vmid}/config         async update (delete=...) -> UPID
  POST /nodes/{node}/qemu/{vmid}/status/start   -> UPID
  GET  /nodes/{node}/qemu/{vmid}/status/current {status}
  GET  /nodes/{node}/storage/{storage}/content  ?content=iso|snippets -> [{volid}]
  POST /nodes/{node}/storage/{storage}/upload   multipart content (iso|vztmpl|import), filename -> UPID
  GET  /nodes/{node}/tasks/{upid}/status        {status: running|stopped, exitstatus}
  GET  /nodes                                   the nodes of the Proxmox cluster
Several hosts (issue 19), as qemu-server's API2/Qemu.pm and PVE::Cluster do: a path naming a node
that is not in the cluster is refused ("no such cluster node"); a VM lives on one node, and a
request for it on another node fails as Proxmox does ("Configuration file ... does not exist");
clone's `target` (another cluster node) needs every volume of the template on shared storage
("can't clone VM to node ... (VM uses local storage)") and `storage` shared ("can't clone to
non-shared storage"), and the new VM then lives on the target; a task is read on its UPID's node;
storage that is not shared has its own content on each node.
"""
from __future__ import annotations

import datetime
import ipaddress
import json
import os
import re
import shutil
import ssl
import subprocess
import threading
from email import policy
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

import pytest

from bakery.deliver import handoff as deliver
from bakery.deliver import proxmox_api as deploy_proxmox
from bakery.errors import EnvError
from bakery.output.writer import write_tree

from conftest import LAB, run_bakery
from test_deliver import delivery_files, lab, proxmox_nic_is_configured, seed_files

TOKEN_ID = "root@pam!bakery"
SECRET = "0b1f6c1e-3c1a-4f57-9d4c-8f7a2b5e9d10"


def make_cert(tmp_path: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pve-standin")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "pve.crt", tmp_path / "pve.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class PVE:
    """State of the stand-in: VMs, storage content, tasks, and every request seen."""

    def __init__(self, node="pve"):
        self.node = node
        self.cluster_nodes = [node]  # GET /nodes; a test adds hosts
        self.shared = set()  # shared storage ids (one content for every node)
        self.node_storage = {}  # (node, storage) -> volid -> (content, bytes), for other nodes' local storage
        self.vms = {9000: {"name": "k8s-template", "template": 1, "status": "stopped",
                           "config": {"name": "k8s-template", "template": "1", "cores": "2", "memory": "4096",
                                      "scsi0": "local-lvm:base-9000-disk-0,size=20G",
                                      "ide0": "local-lvm:vm-9000-cloudinit,media=cdrom",
                                      "net0": "virtio=BC:24:11:00:00:01,bridge=vmbr0"}}}
        self.storage = {"local": {}, "local-lvm": {}}  # storage -> volid -> (content, bytes)
        self.tasks = {}  # upid -> [polls until stopped, exitstatus, on_done]
        self.requests = []  # (method, path, params)
        self.fail_task = {}  # task type -> exitstatus
        self.lock = threading.Lock()
        self.n = 0
        self.polls = 2  # status reads of a task that answer "running" before it stops

    def vm_node(self, vmid):
        return self.vms[vmid].get("node", self.node)

    def volumes(self, node, storage):
        """The content of `storage` as `node` sees it."""
        if node == self.node or storage in self.shared:
            return self.storage.setdefault(storage, {})
        return self.node_storage.setdefault((node, storage), {})

    def task(self, kind, vmid, on_done=None, node=None):
        self.n += 1
        upid = f"UPID:{node or self.node}:{self.n:08X}:0000ABCD:6560F00D:{kind}:{vmid}:{TOKEN_ID}:"
        self.tasks[upid] = [self.polls, self.fail_task.get(kind, "OK"), on_done]
        return upid


class Handler(BaseHTTPRequestHandler):
    pve: PVE = None  # set per server

    def log_message(self, *args):
        pass

    def reply(self, code, data=None, message=None):
        body = json.dumps({"data": data} if code == 200 else {"data": None, "errors": message}).encode()
        self.send_response(code, None if code == 200 else str(message))
        self.send_header("Content-Type", "application/json;charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def params(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        ctype = self.headers.get("Content-Type", "")
        if ctype.startswith("multipart/form-data"):
            msg = BytesParser(policy=policy.default).parsebytes(b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + body)
            out = {}
            for part in msg.iter_parts():
                name = part.get_param("name", header="content-disposition")
                if part.get_filename():
                    out[name] = (part.get_filename(), part.get_payload(decode=True), part.get_content_type())
                else:
                    out[name] = part.get_payload(decode=True).decode()
            return out
        return dict(parse_qsl(body.decode()))

    def handle_any(self, method):
        pve = self.pve
        url = urlsplit(self.path)
        params = dict(parse_qsl(url.query)) if method == "GET" else self.params()
        path = unquote(url.path)
        with pve.lock:
            pve.requests.append((method, path, params))
            if self.headers.get("Authorization") != f"PVEAPIToken={TOKEN_ID}={SECRET}":
                return self.reply(401, message="authentication failure")
            if method == "GET" and path == "/api2/json/nodes":
                return self.reply(200, [{"node": n, "status": "online", "type": "node"} for n in pve.cluster_nodes])
            m = re.fullmatch(r"/api2/json/nodes/([a-z0-9-]+)(/.*)", path)
            if not m:
                return self.reply(404, message=f"no such path {path}")
            if m.group(1) not in pve.cluster_nodes:  # PVE::Cluster::check_node_exists
                return self.reply(500, message=f"no such cluster node '{m.group(1)}'")
            return self.route(method, m.group(2), params, m.group(1))

    def route(self, method, sub, p, node="pve"):
        pve = self.pve
        if m := re.fullmatch(r"/qemu/(\d+)(/.*)", sub):
            vmid = int(m.group(1))
            if vmid not in pve.vms or pve.vm_node(vmid) != node:  # a node acts on its own VMs only
                return self.reply(500, message=f"Configuration file 'nodes/{node}/qemu-server/{vmid}.conf' does not exist")
        if method == "GET" and sub == "/qemu":
            return self.reply(200, [{"vmid": k, "name": v["name"], "status": v["status"],
                                     **({"template": 1} if v.get("template") else {})} for k, v in pve.vms.items()
                                    if pve.vm_node(k) == node])
        if m := re.fullmatch(r"/qemu/(\d+)/clone", sub):
            src, new = int(m.group(1)), int(p["newid"])
            if new in pve.vms:
                return self.reply(500, message=f"unable to create VM {new}: config file already exists")
            target = p.get("target")
            if target in (node, "localhost"):
                target = None
            if target is not None:
                if target not in pve.cluster_nodes:
                    return self.reply(500, message=f"no such cluster node '{target}'")
                if p.get("storage") and p["storage"] not in pve.shared:
                    return self.reply(500, message=f"can't clone to non-shared storage '{p['storage']}'")
                volumes = [v.split(",")[0] for v in pve.vms[src]["config"].values() if re.match(r"[\w.-]+:", v)]
                if any(v.split(":")[0] not in pve.shared for v in volumes):
                    return self.reply(500, message=f"can't clone VM to node '{target}' (VM uses local storage)")
            cfg = {k: v for k, v in pve.vms[src]["config"].items() if k != "template"}
            cfg["name"] = p["name"]
            cfg = {k: (v.replace(f"-{src}-", f"-{new}-")) for k, v in cfg.items()}

            def done():
                pve.vms[new] = {"name": p["name"], "status": "stopped", "config": cfg, "node": target or node}
            return self.reply(200, pve.task("qmclone", src, done, node))
        if m := re.fullmatch(r"/qemu/(\d+)/config", sub):
            vm = pve.vms.get(int(m.group(1)))
            if method == "GET":
                return self.reply(200, dict(vm["config"]))
            for key in filter(None, p.pop("delete", "").split(",")):
                vm["config"].pop(key, None)
            vm["config"].update({k: str(v) for k, v in p.items()})
            return self.reply(200, pve.task("qmconfig", m.group(1), None, node))
        if m := re.fullmatch(r"/qemu/(\d+)/status/start", sub):
            vm = pve.vms[int(m.group(1))]

            def started():
                vm["status"] = "running"
            return self.reply(200, pve.task("qmstart", m.group(1), started, node))
        if m := re.fullmatch(r"/qemu/(\d+)/status/current", sub):
            vm = pve.vms[int(m.group(1))]
            return self.reply(200, {"status": vm["status"], "vmid": int(m.group(1)), "name": vm["name"]})
        if m := re.fullmatch(r"/storage/([\w.-]+)/content", sub):
            items = pve.volumes(node, m.group(1))
            return self.reply(200, [{"volid": v, "content": c} for v, (c, _) in items.items()
                                    if p.get("content") in (None, c)])
        if m := re.fullmatch(r"/storage/([\w.-]+)/upload", sub):
            content = p.get("content")
            if content not in ("iso", "vztmpl", "import"):  # pve-storage's enum: no snippets
                return self.reply(400, message={"content": f"value '{content}' does not have a value in the enumeration 'iso, vztmpl, import'"})
            fname, data, _ = p["filename"]
            # pve-storage (PVE::Storage::normalize_content_filename) turns every character of the
            # name but [a-zA-Z0-9_.-] into '_', and an ISO must end in .iso: the stand-in refuses a
            # name it would change, since the caller then names a volume that does not exist
            if re.sub(r"[^a-zA-Z0-9_.-]", "_", fname) != fname or (content == "iso" and not fname.endswith(".iso")):
                return self.reply(400, message={"filename": f"'{fname}' is not a file name Proxmox keeps as it is"})
            volid = f"{m.group(1)}:{content}/{fname}"

            def stored():
                pve.volumes(node, m.group(1))[volid] = (content, data)
            return self.reply(200, pve.task("imgcopy", "", stored, node))
        if m := re.fullmatch(r"/tasks/(UPID:[^/]+)/status", sub):
            t = pve.tasks.get(m.group(1))
            if t is None or m.group(1).split(":")[1] != node:
                return self.reply(500, message="no such task")
            if t[0] > 0:
                t[0] -= 1
                return self.reply(200, {"status": "running", "upid": m.group(1)})
            if t[2] is not None and t[1] == "OK":
                t[2]()
                t[2] = None
            return self.reply(200, {"status": "stopped", "exitstatus": t[1], "upid": m.group(1)})
        return self.reply(501, message=f"Method '{method} {sub}' not implemented")

    def do_GET(self):
        self.handle_any("GET")

    def do_POST(self):
        self.handle_any("POST")

    def do_PUT(self):
        self.handle_any("PUT")


@pytest.fixture
def server(tmp_path, monkeypatch):
    cert, key = make_cert(tmp_path)
    pve = PVE()
    handler = type("H", (Handler,), {"pve": pve})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    pve.url = f"https://127.0.0.1:{httpd.server_address[1]}/api2/json"
    pve.cert = cert
    yield pve
    httpd.shutdown()
    httpd.server_close()


def setup(tmp_path, pve, *, extra="", image_extra=""):
    cluster = lab(tmp_path, lambda t: t.replace(
        "    builders: [virtualbox-iso, proxmox-iso, qemu]",
        f"    builders: [proxmox-iso]\n    proxmox: {{url: '{pve.url}', tokenId: '{TOKEN_ID}'{extra}}}{image_extra}"))
    seeds = seed_files(cluster)
    out = tmp_path / "outputs" / cluster.name
    write_tree(out, seeds + delivery_files(cluster, seeds))
    return cluster, out


def deployer(cluster, out, pve, **kw):
    api = deploy_proxmox.connect(pve.url, TOKEN_ID, SECRET)
    return deploy_proxmox.Deployer(cluster, out, api, poll=0.01, timeout=20, **kw)


def test_deploy_creates_each_vm(tmp_path, server):
    cluster, out = setup(tmp_path, server)
    seen = []
    results = deployer(cluster, out, server, report=lambda n, m: seen.append((n, m))).deploy()
    assert [(r.name, r.vm_id, r.state) for r in results] == [
        ("k8s-master", 9100, "created"), ("k8s-node1", 9101, "created"), ("k8s-node2", 9102, "created")]
    reqs = server.requests
    for n in cluster.nodes:
        # the seed on the ISO storage is the node's Proxmox seed: its snippets, read back by xorriso
        uploaded = [v for v in server.storage["local"].items() if f"lab_{n.name}-seed-" in v[0]]
        assert len(uploaded) == 1 and uploaded[0][1][0] == "iso"
        assert uploaded[0][1][1] == deliver.proxmox_seed_iso(cluster, out, n.name)  # reproducible
        if shutil.which("xorriso"):
            iso, dest = tmp_path / f"{n.name}.iso", tmp_path / f"seed-{n.name}"
            iso.write_bytes(uploaded[0][1][1])
            subprocess.run(["xorriso", "-osirrox", "on", "-indev", str(iso), "-extract", "/", str(dest)],
                           capture_output=True, check=True)
            for part, name in deliver.SNIPPET_PARTS:
                snippet = out / "proxmox/snippets" / deliver.snippet_name(cluster, n.name, part)
                assert (dest / name).read_bytes() == snippet.read_bytes(), (n.name, name)
        volid = uploaded[0][0]
        clone = next(p for m, path, p in reqs if path.endswith("/qemu/9000/clone") and p["name"] == n.name)
        assert clone == {"newid": str(n.vm_id), "name": n.name, "full": "1", "storage": "local-lvm"}
        vm = server.vms[n.vm_id]
        assert vm["status"] == "running"
        cfg = vm["config"]
        assert cfg["cores"] == str(n.cpus) and cfg["memory"] == str(n.memory_mib)
        assert cfg["net0"] == f"virtio={deliver.stable_mac('lab', n.name).upper()},bridge=vmbr0"
        assert cfg["ide2"] == f"{volid},media=cdrom"
        assert not any("cloudinit" in v for v in cfg.values()), "one seed only: the template's drive is removed"
    # every task was waited for until it stopped (the stand-in answers "running" twice first)
    assert all(t[0] == 0 for t in server.tasks.values())
    assert ("k8s-node2", "VM 9102 running") in seen
    # uploads are multipart with content=iso (the API refuses snippets)
    assert all(p["content"] == "iso" for m, path, p in reqs if path.endswith("/upload"))


def test_deploy_is_idempotent(tmp_path, server):
    cluster, out = setup(tmp_path, server)
    deployer(cluster, out, server).deploy()
    server.requests.clear()
    results = deployer(cluster, out, server).deploy()
    assert [r.state for r in results] == ["exists"] * 3
    assert [r for r in server.requests if r[0] == "POST"] == []


def test_deploy_refuses_a_foreign_vm(tmp_path, server):
    cluster, out = setup(tmp_path, server)
    server.vms[9101] = {"name": "database", "status": "running", "config": {"name": "database"}}
    with pytest.raises(EnvError, match="VM 9101 on pve is 'database', not k8s-node1"):
        deployer(cluster, out, server).deploy()
    assert server.vms[9101]["name"] == "database"


def test_failed_task_is_one_line(tmp_path, server):
    cluster, out = setup(tmp_path, server)
    server.fail_task["qmclone"] = "clone failed: storage 'local-lvm' is full"
    with pytest.raises(EnvError, match="Proxmox task clone to VM 9100 failed: clone failed: storage 'local-lvm' is full"):
        deployer(cluster, out, server).deploy()


def test_missing_template(tmp_path, server):
    cluster, out = setup(tmp_path, server)
    del server.vms[9000]
    with pytest.raises(EnvError, match="no template VM 9000 on pve; bake it first"):
        deployer(cluster, out, server).deploy()


def test_wrong_token(tmp_path, server):
    cluster, out = setup(tmp_path, server)
    api = deploy_proxmox.connect(server.url, TOKEN_ID, "wrong")
    with pytest.raises(EnvError, match="401.*check the token id root@pam!bakery and PROXMOX_TOKEN_SECRET"):
        deploy_proxmox.Deployer(cluster, out, api, poll=0.01).deploy()


def test_untrusted_certificate(tmp_path, server, monkeypatch):
    cluster, out = setup(tmp_path, server)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    monkeypatch.setenv("CURL_CA_BUNDLE", "")
    with pytest.raises(EnvError, match="SSLError.*insecureSkipTlsVerify"):
        deployer(cluster, out, server).deploy()
    api = deploy_proxmox.connect(server.url, TOKEN_ID, SECRET, verify=False)
    deploy_proxmox.Deployer(cluster, out, api, poll=0.01).deploy()
    assert server.vms[9100]["status"] == "running"


def test_cicustom_needs_snippets_on_the_storage(tmp_path, server):
    cluster, out = setup(tmp_path, server)
    with pytest.raises(EnvError, match="snippets missing on local: local:snippets/lab_k8s-master-user.yaml"):
        deployer(cluster, out, server, cicustom=True).deploy()
    for n in cluster.nodes:
        for part in ("user", "network", "meta"):
            server.storage["local"][f"local:snippets/lab_{n.name}-{part}.yaml"] = ("snippets", b"")
    deployer(cluster, out, server, cicustom=True).deploy()
    cfg = server.vms[9101]["config"]
    assert cfg["cicustom"] == ("user=local:snippets/lab_k8s-node1-user.yaml,network=local:snippets/"
                               "lab_k8s-node1-network.yaml,meta=local:snippets/lab_k8s-node1-meta.yaml")
    assert cfg["ide0"].startswith("local-lvm:vm-9101-cloudinit"), "cicustom keeps the cloud-init drive"
    assert not [r for r in server.requests if r[1].endswith("/upload")]
    # deploy.sh gives the same cicustom value
    assert cfg["cicustom"] in (out / "proxmox" / "deploy.sh").read_text()


def test_cli_deploy_proxmox(tmp_path, server):
    cluster_yaml = tmp_path / "c.yaml"
    cluster_yaml.write_text(LAB.read_text().replace(
        "    builders: [virtualbox-iso, proxmox-iso, qemu]",
        f"    builders: [proxmox-iso]\n    proxmox: {{url: '{server.url}', tokenId: '{TOKEN_ID}'}}"))
    out = tmp_path / "out"
    # the command polls a task at 0.25 s, then 1.5 times longer: one "running" answer keeps its
    # wait in the path at a quarter of the time (the Deployer tests above answer it twice)
    server.polls = 1
    env = {**os.environ, "REQUESTS_CA_BUNDLE": str(server.cert)}
    env.pop("PROXMOX_TOKEN_SECRET", None)
    r = run_bakery("deploy", "proxmox", cluster_yaml, "--out", out, env=env)
    assert r.returncode == 1 and "missing credentials: set PROXMOX_TOKEN_SECRET" in r.stderr
    assert SECRET not in r.stdout + r.stderr
    r = run_bakery("deploy", "proxmox", cluster_yaml, "--out", out, env={**env, "PROXMOX_TOKEN_SECRET": SECRET})
    if not (out / "nodes" / "k8s-master" / "seed.iso").exists():
        pytest.skip("render writes no seeds yet (bakery/firstboot.py)")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["k8s-master: VM 9100 created (running)", "k8s-node1: VM 9101 created (running)",
                                     "k8s-node2: VM 9102 created (running)"]
    assert SECRET not in r.stdout + r.stderr
    assert server.tasks and all(t[0] == 0 for t in server.tasks.values()), "every task was waited for"


def test_cli_deploy_of_a_virtualbox_and_proxmox_cluster_attaches_a_seed_for_the_proxmox_nic(tmp_path, server):
    """Through the API: the seed ISO attached to each clone configures the NIC the API call
    created (net0, virtio, with the MAC it set), although the cluster bakes for VirtualBox too."""
    import io

    import pycdlib
    import yaml

    text = LAB.read_text().replace(
        "    builders: [virtualbox-iso, proxmox-iso, qemu]",
        f"    builders: [virtualbox-iso, proxmox-iso]\n    proxmox: {{url: '{server.url}', tokenId: '{TOKEN_ID}'}}")
    cluster_yaml = tmp_path / "c.yaml"
    cluster_yaml.write_text(text)
    data = yaml.safe_load(text)
    out = tmp_path / "out"
    server.polls = 1  # as in test_cli_deploy_proxmox
    env = {**os.environ, "REQUESTS_CA_BUNDLE": str(server.cert), "PROXMOX_TOKEN_SECRET": SECRET}
    r = run_bakery("deploy", "proxmox", cluster_yaml, "--out", out, env=env)
    assert r.returncode == 0, r.stderr
    prefix = data["spec"]["network"]["nodeCidr"].split("/")[1]
    for node in data["spec"]["nodes"]:
        (vm,) = [v for v in server.vms.values() if v["name"] == node["name"]]
        cfg = vm["config"]
        mac = re.fullmatch(r"virtio=([0-9A-F:]{17}),bridge=vmbr0", cfg["net0"]).group(1)
        volid = cfg["ide2"].split(",")[0]
        _, iso_bytes = server.storage["local"][volid]
        iso = pycdlib.PyCdlib()
        iso.open_fp(io.BytesIO(iso_bytes))
        buf = io.BytesIO()
        iso.get_file_from_iso_fp(buf, rr_path="/network-config")
        iso.close()
        (tmp_path / f"{node['name']}-network-config").write_bytes(buf.getvalue())
        proxmox_nic_is_configured(tmp_path / f"{node['name']}-network-config", mac, f"{node['address']}/{prefix}",
                                  data["spec"]["network"]["gateway"], tmp_path / node["name"])


def test_deploy_only_the_nodes_named(tmp_path, server):
    """Issue 17: a node added later, or a replacement, is deployed alone."""
    cluster, out = setup(tmp_path, server)
    results = deployer(cluster, out, server).deploy(only={"k8s-node2"})
    assert [(r.name, r.state) for r in results] == [("k8s-node2", "created")]
    assert set(server.vms) == {9000, 9102}


def test_cli_deploy_proxmox_refuses_an_unknown_node(tmp_path, server):
    cluster_yaml = tmp_path / "c.yaml"
    cluster_yaml.write_text(LAB.read_text().replace(
        "    builders: [virtualbox-iso, proxmox-iso, qemu]",
        f"    builders: [proxmox-iso]\n    proxmox: {{url: '{server.url}', tokenId: '{TOKEN_ID}'}}"))
    r = run_bakery("deploy", "proxmox", cluster_yaml, "--out", tmp_path / "out", "--node", "nope",
                   env={**os.environ, "PROXMOX_TOKEN_SECRET": SECRET})
    assert r.returncode == 2 and "nope: not a node of cluster lab" in r.stderr
    assert not (tmp_path / "out").exists() and server.vms.keys() == {9000}


def test_arm64_clones_take_their_seed_on_scsi(tmp_path, server):
    """An aarch64 guest has no IDE bus (packer-plugin-proxmox #187): the template's cloud-init
    drive is on SCSI (the source's cloud_init_disk_type), and so is each clone's seed CD."""
    server.vms[9000]["config"].pop("ide0")
    server.vms[9000]["config"]["scsi1"] = "local-lvm:vm-9000-cloudinit,media=cdrom"
    cluster, out = setup(tmp_path, server, image_extra="\n    arch: arm64")
    assert cluster.image.arch == "arm64"
    deployer(cluster, out, server).deploy()
    for n in cluster.nodes:
        cfg = server.vms[n.vm_id]["config"]
        assert cfg["scsi30"].endswith(",media=cdrom") and f"lab_{n.name}-seed-" in cfg["scsi30"]
        assert not [k for k in cfg if k.startswith(("ide", "sata"))], cfg
        assert not any("cloudinit" in v for v in cfg.values())
    # deploy.sh adds a missing cloud-init drive on SCSI too
    script = (out / "proxmox" / "deploy.sh").read_text()
    assert '--scsi30 "$disk_storage:cloudinit"' in script and "--ide2" not in script
