"""`bakery deploy proxmox`: the nodes of a rendered cluster as VMs on Proxmox VE, through its
API (proxmoxer), with an API token from the environment.

Per node: put its cloud-init seed on the Proxmox storage, clone the baked template, configure
(cores, memory, net0 with the node's MAC on the bridge, the seed), start, and wait until it runs.
A VM id that exists already with the node's name is left alone and reported.

Several hosts (nodes[].proxmoxNode): the template lives on image.proxmox.node; a node placed on
another host of the Proxmox cluster is cloned there with the clone call's `target`, and every
later call for its VM (config, start, status) and its seed (upload, snippet check) goes to that
host's path: qemu-server's clone_vm renames the new VM's config into the target node's folder,
and a node's API acts only on the VMs whose config it holds. A task is read on the node named in
its UPID.

The seed: Proxmox's upload API takes only iso, vztmpl and import content, not snippets
(pve-storage's upload method; Proxmox bugzilla 2208), so by default the node's Proxmox seed
(its snippets' content: a network-config for the clone's one NIC, not VirtualBox's) is made
into an ISO (handoff.proxmox_seed_iso), uploaded and attached as a CD-ROM, and the
template's own cloud-init drive is removed from the clone so cloud-init sees one seed only.
With --cicustom the snippets must already be on the snippet storage (copied by
proxmox/deploy.sh, or a shared storage); they are checked, then given with --cicustom.
"""
from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import EnvError, InputError
from ..providers import proxmox

TOKEN_ENV = "PROXMOX_TOKEN_SECRET"
URL_ENV = "PROXMOX_URL"


@dataclass
class NodeResult:
    name: str
    vm_id: int
    state: str  # created | exists
    detail: str = ""


Report = Callable[[str, str], None]  # (node name, what is happening)


def connect(url: str, token_id: str, secret: str, *, verify: bool = True, timeout: int = 60):
    """A proxmoxer client for an API URL such as https://pve.example:8006/api2/json."""
    from proxmoxer import ProxmoxAPI

    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise InputError(f"Proxmox API URL {url!r} must be https://HOST[:PORT]/api2/json", check="proxmox-url")
    user, _, token_name = token_id.partition("!")
    prefix = parts.path.rstrip("/")
    if prefix.endswith("/api2/json"):
        prefix = prefix[: -len("/api2/json")]
    kwargs = {"path_prefix": prefix.strip("/")} if prefix.strip("/") else {}
    if not verify:  # the user chose insecureSkipTlsVerify: one choice, not a warning per request
        import urllib3

        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    return ProxmoxAPI(parts.hostname, port=parts.port or 8006, user=user, token_name=token_name,
                      token_value=secret, verify_ssl=verify, service="PVE", timeout=timeout, **kwargs)


class Deployer:
    def __init__(self, cluster, out: Path, api, *, report: Report | None = None, cicustom: bool = False,
                 poll: float = 0.25, timeout: float = 900.0):
        self.cluster = cluster
        self.px = cluster.image.proxmox
        self.out = Path(out)
        self.api = api
        self.node = api.nodes(self.px.node)
        self.report = report or (lambda name, msg: None)
        self.cicustom = cicustom
        self.poll = poll
        self.timeout = timeout

    # -- API calls, with errors turned into one line ------------------------------------------

    def _call(self, what: str, fn, *args, **kwargs):
        from proxmoxer import ResourceException

        try:
            return fn(*args, **kwargs)
        except ResourceException as exc:
            hint = ""
            if exc.status_code == 401:
                hint = f"; check the token id {self.px.token_id} and {TOKEN_ENV}"
            elif exc.status_code == 403:
                hint = f"; give the token {self.px.token_id} the permission (or create it without privilege separation)"
            detail = f" ({exc.errors})" if getattr(exc, "errors", None) else ""
            raise EnvError(f"Proxmox refused to {what}: {exc.status_code} {exc.status_message}{detail}{hint}") from None
        except Exception as exc:  # requests' connection and TLS errors
            name = type(exc).__name__
            if name in ("ConnectionError", "SSLError", "Timeout", "ConnectTimeout", "ReadTimeout"):
                tls = ("; if the certificate is self-signed set image.proxmox.insecureSkipTlsVerify "
                       "or REQUESTS_CA_BUNDLE") if name == "SSLError" else ""
                raise EnvError(f"cannot reach the Proxmox API to {what}: {name}: {exc}{tls}") from None
            raise

    def host(self, name: str):
        """The API of Proxmox node `name`."""
        return self.api.nodes(name)

    def wait_task(self, upid, what: str) -> None:
        """Wait for a task (UPID) to stop; fail with its exit status unless it is OK. The task is
        read on the node that runs it, the UPID's second field (UPID:node:pid:...)."""
        if not isinstance(upid, str) or not upid.startswith("UPID:"):
            return  # synchronous call: nothing to wait for
        tasks = self.host(upid.split(":")[1] or self.px.node).tasks
        deadline = time.monotonic() + self.timeout
        delay = self.poll
        while True:
            st = self._call(f"read the task of {what}", tasks(upid).status.get)
            if st.get("status") == "stopped":
                if st.get("exitstatus") != "OK":
                    raise EnvError(f"Proxmox task {what} failed: {st.get('exitstatus')}")
                return
            if time.monotonic() > deadline:
                raise EnvError(f"Proxmox task {what} still running after {self.timeout:.0f}s ({upid})")
            time.sleep(delay)
            delay = min(delay * 1.5, 2.0)  # short tasks answer fast, long ones are not hammered

    # -- steps --------------------------------------------------------------------------------

    def existing_vms(self, hosts=()) -> dict[int, dict]:
        """The VMs on the template's node and on `hosts`, each with the node that holds it."""
        vms: dict[int, dict] = {}
        for host in dict.fromkeys((self.px.node, *hosts)):
            for v in self._call(f"list the VMs on {host}", self.host(host).qemu.get):
                vms[int(v["vmid"])] = {**v, "node": host}
        return vms

    def check_hosts(self, nodes) -> None:
        """Every node's proxmoxNode is a node of the Proxmox cluster (GET /nodes)."""
        listed = self._call("list the nodes of the Proxmox cluster", self.api.nodes.get)
        members = sorted(str(m["node"]) for m in listed)
        for n in nodes:
            if n.proxmox_node not in members:
                raise EnvError(f"{n.name}: proxmoxNode {n.proxmox_node} is not a node of the Proxmox cluster "
                               f"(its nodes: {', '.join(members)}); fix nodes[].proxmoxNode in cluster.yaml")

    def _storage_volumes(self, storage: str, content: str, host: str | None = None) -> set[str]:
        host = host or self.px.node
        items = self._call(f"list {content} on {storage} of {host}", self.host(host).storage(storage).content.get,
                           content=content)
        return {i["volid"] for i in items}

    def upload_seed(self, name: str, host: str | None = None) -> str:
        """Upload the node's Proxmox seed as an ISO made from its snippets, as ISO content (named
        by its hash, so a changed seed is a new file and an unchanged one is not sent again), to
        the ISO storage as the VM's host `host` sees it (a storage that is not shared is per
        node); returns its volume id."""
        from .handoff import proxmox_seed_iso, volume_stem

        data = proxmox_seed_iso(self.cluster, self.out, name)
        fname = f"{volume_stem(self.cluster, name)}-seed-{hashlib.sha256(data).hexdigest()[:12]}.iso"
        storage = self.px.iso_storage
        volid = f"{storage}:iso/{fname}"
        host = host or self.px.node
        if volid in self._storage_volumes(storage, "iso", host):
            self.report(name, f"seed {fname} already on {storage}")
            return volid
        self.report(name, f"uploading seed to {storage}" + (f" of {host}" if host != self.px.node else ""))
        buf = io.BytesIO(data)
        buf.name = fname  # proxmoxer sends a file object's name as the multipart file name
        upid = self._call(f"upload {fname} to {storage}", self.host(host).storage(storage).upload.post,
                          content="iso", filename=buf)
        self.wait_task(upid, f"upload of {fname}")
        return volid

    def check_snippets(self, name: str, host: str | None = None) -> str:
        """The node's cicustom value, once its snippets are on the snippet storage as the VM's
        host sees it: cloud-init reads them there when the VM starts."""
        from .handoff import SNIPPET_PARTS, snippet_name

        storage = self.px.snippet_storage
        have = self._storage_volumes(storage, "snippets", host)
        want = [(part, f"{storage}:snippets/{snippet_name(self.cluster, name, part)}") for part, _ in SNIPPET_PARTS]
        missing = [v for _, v in want if v not in have]
        if missing:
            where = f" of {host}" if host and host != self.px.node else ""
            raise EnvError(f"{name}: snippets missing on {storage}{where}: {', '.join(missing)}; the API cannot "
                           "upload snippets: copy them with proxmox/deploy.sh (or scp to the storage's "
                           "snippets/ folder), or deploy without --cicustom")
        return ",".join(f"{part}={v}" for part, v in want)

    def deploy_node(self, n, mac: str, existing: dict[int, dict]) -> NodeResult:
        px = self.px
        vm = existing.get(n.vm_id)
        if vm is not None:
            if vm.get("name") != n.name:
                raise EnvError(f"VM {n.vm_id} on {vm.get('node', px.node)} is {vm.get('name')!r}, not {n.name}; "
                               "left alone: set this node's vmId in cluster.yaml")
            if vm.get("node", n.proxmox_node) != n.proxmox_node:
                raise EnvError(f"VM {n.vm_id} ({n.name}) is on {vm['node']}, not on its proxmoxNode "
                               f"{n.proxmox_node}; left alone: migrate it (qm migrate {n.vm_id} {n.proxmox_node}) "
                               "or change proxmoxNode in cluster.yaml")
            self.report(n.name, f"VM {n.vm_id} exists ({vm.get('status', '?')}), left alone")
            return NodeResult(n.name, n.vm_id, "exists", vm.get("status", ""))
        host = n.proxmox_node
        seed = self.check_snippets(n.name, host) if self.cicustom else self.upload_seed(n.name, host)
        clone = {"newid": n.vm_id, "name": n.name, "full": 1, "storage": px.disk_storage}
        if host != px.node:
            # qemu-server's clone_vm: a target other than the template's node needs the template's
            # volumes and `storage` on shared storage; the new VM's config then lives on `target`
            clone["target"] = host
        self.report(n.name, f"cloning template {px.template_vm_id} to VM {n.vm_id}"
                    + (f" on {host}" if host != px.node else ""))
        upid = self._call(f"clone VM {px.template_vm_id}", self.node.qemu(px.template_vm_id).clone.post, **clone)
        self.wait_task(upid, f"clone to VM {n.vm_id}")
        vm_api = self.host(host).qemu(n.vm_id)
        self.report(n.name, "configuring")
        cfg = self._call(f"read the config of VM {n.vm_id}", vm_api.config.get)
        params = {"cores": n.cpus, "memory": n.memory_mib, "net0": f"virtio={mac.upper()},bridge={px.bridge}"}
        if self.cicustom:
            params["cicustom"] = seed
            if not any("cloudinit" in str(v) for v in cfg.values()):
                slot = next(s for s in proxmox.clone_cd_slots(self.cluster.image.arch) if s not in cfg)
                params[slot] = f"{px.disk_storage}:cloudinit"
        else:
            drop = sorted(k for k, v in cfg.items() if "cloudinit" in str(v))
            if drop:
                params["delete"] = ",".join(drop)
            slot = next(s for s in proxmox.clone_cd_slots(self.cluster.image.arch) if s not in cfg)
            params[slot] = f"{seed},media=cdrom"
        upid = self._call(f"configure VM {n.vm_id}", vm_api.config.post, **params)
        self.wait_task(upid, f"configuration of VM {n.vm_id}")
        self.report(n.name, "starting")
        upid = self._call(f"start VM {n.vm_id}", vm_api.status.start.post)
        self.wait_task(upid, f"start of VM {n.vm_id}")
        deadline = time.monotonic() + self.timeout
        while True:
            st = self._call(f"read the status of VM {n.vm_id}", vm_api.status.current.get)
            if st.get("status") == "running":
                break
            if time.monotonic() > deadline:
                raise EnvError(f"VM {n.vm_id} ({n.name}) is {st.get('status')!r}, not running, "
                               f"after {self.timeout:.0f}s")
            time.sleep(self.poll)
        self.report(n.name, f"VM {n.vm_id} running")
        return NodeResult(n.name, n.vm_id, "created", "running")

    def deploy(self, only: set[str] | None = None) -> list[NodeResult]:
        """Deploy every node, or the nodes named in ``only``."""
        from .handoff import node_mac

        nodes = [n for n in self.cluster.nodes if only is None or n.name in only]
        hosts = sorted({n.proxmox_node for n in nodes} - {self.px.node})
        if hosts:
            self.check_hosts(nodes)
        existing = self.existing_vms(hosts)
        template = existing.get(self.px.template_vm_id)
        if template is None or template["node"] != self.px.node:
            raise EnvError(f"no template VM {self.px.template_vm_id} on {self.px.node}; bake it first: "
                           "bakery build CLUSTER.yaml --only proxmox-iso")
        results = []
        for n in nodes:
            mac = node_mac(self.cluster, n)
            results.append(self.deploy_node(n, mac, existing))
        return results
