"""The rehearsal's driver: the init node first, then each joining node once what it waits for
is there (control-plane nodes in their JOIN_AFTER chain, then workers), each in its own
throwaway root and network namespace over one shared simulated cluster; then the checks only
the whole cluster shows (the operator's view of Calico, the user's admin.conf, leaks)."""
from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import image, seeds

TESTS = Path(__file__).resolve().parent.parent
NODE_TIMEOUT = 120  # seconds of wall time for one node's first boot (a hang is a failure)
STEP_LINE = re.compile(r"bakery-firstboot: step ([^\s:]+)")  # "step NAME" and "step NAME: done on an earlier run"
NAT_LEASE = ("10.0.2.15/24", "10.0.2.2")  # VirtualBox NAT's DHCP answer, the same on every VM
DHCP_ROUTE_METRIC = 100  # netplan's default route-metric for a DHCP ethernet (dhcp4-overrides)


@dataclass
class Failure:
    node: str
    step: str
    reason: str

    def __str__(self) -> str:
        return f"{self.node}: {self.step}: {self.reason}"


@dataclass
class Result:
    lines: list[str] = field(default_factory=list)
    failure: Failure | None = None
    state: dict = field(default_factory=dict)
    consoles: dict[str, str] = field(default_factory=dict)
    calls: dict[str, list[str]] = field(default_factory=dict)  # kubeadm, kubectl ... as each node ran them
    work: Path | None = None  # the nodes' roots are under work/nodes/NODE/root while kept

    def root(self, node: str) -> Path:
        assert self.work is not None, "rehearse(..., keep=DIR) keeps the nodes' roots"
        return self.work / "nodes" / node / "root"

    @property
    def ok(self) -> bool:
        return self.failure is None


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(args, check=check, capture_output=True, text=True)


class Lab:
    def __init__(self, out: Path, work: Path, *, faults: dict | None = None, say=print,
                 running: dict | None = None, boot: list[str] | None = None):
        self.out, self.work = out, work
        self.faults = faults or {}
        self.say = say
        # day 2: the state of a running cluster (a previous rehearsal's Result.state, changed as
        # the test needs: a node retired, say) and the nodes to boot against it
        self.running, self.only = running, boot
        self.result = Result()
        self.state_dir = work / "state"
        self.state_dir.mkdir(parents=True)
        self.tag = f"rh{os.getpid()}"
        self.net = f"{self.tag}net"
        self.python = os.path.realpath(sys.executable)

    # -- the shared state, from the driver's side ------------------------------------------
    def sim(self):
        """The stand-ins' state module, pointed at this lab's state (from the host's side)."""
        if str(TESTS / "standins") not in sys.path:
            sys.path.insert(0, str(TESTS / "standins"))
        import simcluster as sim
        sim.STATE, sim.LOCK = self.state_dir / "cluster.json", self.state_dir / "lock"
        return sim

    def state(self) -> dict:
        with self.sim().state(write=False) as st:
            return st

    def update_state(self, fn) -> None:
        with self.sim().state() as st:
            fn(st)

    def line(self, node: str, step: str, what: str) -> None:
        text = f"{node}: {step}: {what}"
        self.result.lines.append(text)
        self.say(text)

    def fail(self, node: str, step: str, reason: str) -> Result:
        self.result.failure = Failure(node, step, reason)
        self.say(str(self.result.failure))
        return self.result

    # -- the whole rehearsal ----------------------------------------------------------------
    def run(self) -> Result:
        try:
            all_seeds = seeds.read_seeds(self.out)
        except seeds.SeedError as e:
            return self.fail("cluster", "seeds", str(e))
        inits = [s for s in all_seeds if s.action == "init"]
        if self.running is None:
            if len(inits) != 1:
                return self.fail("cluster", "seeds", f"{len(inits)} nodes run kubeadm init (want exactly one)")
            booted = all_seeds
        else:
            (self.state_dir / "cluster.json").write_text(json.dumps(self.running))
            unknown = set(self.only or []) - {s.name for s in all_seeds}
            if unknown:
                return self.fail("cluster", "seeds", f"no seed for {', '.join(sorted(unknown))}")
            booted = [s for s in all_seeds if s.name in (self.only or [])]
        self.update_state(lambda st: st["pending"].update({
            s.name: {"action": s.action, "joinAfter": s.join_after} for s in booted}))
        sh("ip", "netns", "add", self.net)
        try:
            sh("ip", "-n", self.net, "link", "set", "lo", "up")
            pending = [s for s in booted if self.running is not None or s is not inits[0]]
            if self.running is None and not self.boot(inits[0]):
                return self.result
            while pending:
                st = self.state()
                ready = [s for s in pending if s.action != "join-control-plane" or not s.join_after
                         or self.sim().api_server_ready(st, s.join_after)]
                ready.sort(key=lambda s: s.action != "join-control-plane")
                if not ready:
                    s = pending[0]
                    return self.fail(s.name, "kubeadm", f"waits for the control-plane node {s.join_after}, which "
                                                        "no node before it makes ready (JOIN_AFTER)")
                node = ready[0]
                pending.remove(node)
                if not self.boot(node):
                    return self.result
            self.cluster_checks(all_seeds, booted)
        finally:
            sh("ip", "netns", "del", self.net, check=False)
            self.result.state = self.state()
        return self.result

    # -- one node ---------------------------------------------------------------------------
    def boot(self, seed: seeds.Seed) -> bool:
        name = seed.name
        base = self.work / "nodes" / name
        root, upper, workdir = base / "root", base / "usr-upper", base / "usr-work"
        for d in (root, upper, workdir):
            d.mkdir(parents=True)
        facts = image.bake(self.out, root, self.python)
        image.standin_wrappers(upper, self.python)
        try:
            n = image.apply_cloud_init(root, seed)
        except image.CloudInitError as e:
            self.fail(name, "write_files", str(e))
            return False
        self.line(name, "write_files", f"ok ({n} files)")
        # what the image and cloud-init put in /usr lives in the node's own layer over the host's
        shutil.copytree(root / "usr", upper, symlinks=True, dirs_exist_ok=True)
        shutil.rmtree(root / "usr")
        (root / "usr").mkdir()
        ns = f"{self.tag}n{len(list((self.work / 'nodes').iterdir()))}"
        try:
            interfaces, default_addr = self.network(ns, seed)
        except (subprocess.CalledProcessError, ValueError) as e:
            self.fail(name, "network", f"network-config cannot be applied: {getattr(e, 'stderr', '') or e}")
            return False
        node_json = {"name": name, "machine": f"{name}#{secrets.token_hex(4)}",  # a new VM each boot() call
                     "hostname": (root / "etc/hostname").read_text().strip(),
                     "interfaces": interfaces, "addresses": [a for addrs in interfaces.values() for a in addrs],
                     "defaultRouteAddress": default_addr,
                     "faults": self.faults.get(name, {}), **facts}
        (root / ".rehearsal").mkdir()
        (root / ".rehearsal" / "node.json").write_text(json.dumps(node_json, indent=1))
        proc_sys = base / "proc-sys"
        for key, value in facts["sysctls"].items():
            f = proc_sys / key.replace(".", "/")
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(value + "\n")
        proc_sys.mkdir(exist_ok=True)
        (base / "swaps").write_text("Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n")
        # the stand-ins read the kubelet's field tree from the product's schemas/ (contracts.py)
        binds = {"/.rehearsal/tests": (str(TESTS), True), "/.rehearsal/schemas": (str(TESTS.parent / "schemas"), True),
                 "/.rehearsal/state": (str(self.state_dir), False)}
        for d in sorted({os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}):
            if not d.startswith("/usr/") and d != "/usr":
                binds[d] = (d, True)
        spec = {"root": str(root), "usrUpper": str(upper), "usrWork": str(workdir), "binds": binds,
                "procSys": str(proc_sys), "swaps": str(base / "swaps")}
        self.update_state(lambda st: st["pending"].setdefault(name, {}).update({"started": True}))
        before = len(self.state().get("violations", []))
        console, rc = "", None
        for boot in range(1, int(self.faults.get(name, {}).get("boots", 1)) + 1):
            if boot > 1:
                ns = f"{ns}b"
                self.network(ns, seed)
            spec["boot"] = boot
            (base / "spec.json").write_text(json.dumps(spec))
            text, rc = self.run_boot(ns, seed, base / "spec.json")
            console += text
            if rc == 0 or self.state().get("violations", [])[before:]:
                break
        self.result.consoles[name] = console
        calls = root / ".rehearsal" / "calls"
        self.result.calls[name] = calls.read_text().splitlines() if calls.exists() else []
        steps = list(dict.fromkeys(m.group(1) for m in STEP_LINE.finditer(console)))
        violations = self.state().get("violations", [])[before:]
        for s in steps[:-1]:
            self.line(name, s, "ok")
        current = steps[-1] if steps else "runcmd"
        if violations:
            v = violations[0]
            wait = [ln for ln in console.splitlines() if "waiting for" in ln]
            reason = f"{v['step']}: {v['reason']}" + (f" (last: {wait[-1].split(': ', 1)[-1]})" if v["step"] == "wait" and wait else "")
            self.fail(name, current, reason)
            return False
        if rc is None:
            self.fail(name, current, f"no end within {NODE_TIMEOUT}s")
            return False
        sentinel = root / "var/lib/bakery/node-ready"
        if rc != 0 or not sentinel.exists():
            failed = [ln for ln in console.splitlines() if "FAILED" in ln]
            self.fail(name, current, failed[0].split("FAILED", 1)[1].strip(" :") if failed
                      else f"runcmd exited {rc} without the sentinel: " + " | ".join(console.splitlines()[-3:]))
            return False
        if steps:
            self.line(name, steps[-1], "ok")
        self.line(name, "sentinel", "ok")
        self.update_state(lambda st: st["pending"][name].update({"done": True}))
        return True

    def run_boot(self, ns: str, seed: seeds.Seed, spec: Path) -> tuple[str, int | None]:
        listener = self.listen_if_answering(seed)
        try:
            p = subprocess.run(["ip", "netns", "exec", ns, "unshare", "--mount", "--propagation", "private",
                                self.python, str(Path(__file__).with_name("node.py")), str(spec)],
                               capture_output=True, text=True, timeout=NODE_TIMEOUT)
            return p.stdout + p.stderr, p.returncode
        except subprocess.TimeoutExpired as e:
            out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            return out, None
        finally:
            if listener is not None:
                listener.kill()
                listener.wait()
            sh("ip", "netns", "del", ns, check=False)

    def network(self, ns: str, seed: seeds.Seed) -> tuple[dict[str, list[str]], str]:
        """The node's NICs as its network-config sets them (veth pairs whose other ends are in
        the lab's network namespace); a DHCP NIC gets VirtualBox NAT's lease."""
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        addresses: list[str] = []
        routes = []  # (metric, gateway, NIC, source address): the lowest metric is the default route
        interfaces = {}
        for i, iface in enumerate(seed.interfaces):
            peer = f"{ns}p{i}"
            mac = ["address", iface.mac] if iface.mac else []
            sh("ip", "link", "add", peer, "netns", self.net, "type", "veth", "peer", "name", iface.name,
               "netns", ns, *mac)
            sh("ip", "-n", ns, "link", "set", iface.name, "up")
            sh("ip", "-n", self.net, "link", "set", peer, "up")
            assigned = list(iface.addresses)
            if iface.dhcp:
                assigned.append(NAT_LEASE[0])
            for a in assigned:
                sh("ip", "-n", ns, "addr", "add", a, "dev", iface.name)
                addresses.append(str(ipaddress.ip_interface(a).ip))
            interfaces[iface.name] = [str(ipaddress.ip_interface(a).ip) for a in assigned]
            if iface.dhcp:
                routes.append((DHCP_ROUTE_METRIC, NAT_LEASE[1], iface.name, str(ipaddress.ip_interface(NAT_LEASE[0]).ip)))
            if iface.gateway and iface.addresses:
                routes.append((iface.gateway_metric, iface.gateway, iface.name,
                               str(ipaddress.ip_interface(iface.addresses[0]).ip)))
            if iface.addresses:
                # the other end answers for the endpoint (when it is not this node) on this network
                host = seed.values.get("ENDPOINT_HOST", "")
                net = ipaddress.ip_interface(iface.addresses[0]).network
                if host and host not in addresses and ipaddress.ip_address(host) in net:
                    sh("ip", "-n", self.net, "addr", "add", f"{host}/{net.prefixlen}", "dev", peer)
        for metric, via, dev, _ in routes:
            sh("ip", "-n", ns, "route", "add", "default", "via", via, "dev", dev, "metric", str(metric), "onlink")
        default_addr = min(routes)[3] if routes else addresses[0] if addresses else "127.0.0.1"
        return interfaces, default_addr

    def listen_if_answering(self, seed: seeds.Seed):
        host, port = seed.values.get("ENDPOINT_HOST", ""), seed.values.get("ENDPOINT_PORT", "6443")
        sim = self.sim()
        if not host or seed.action == "init" or sim.reach(self.state(), f"https://{host}:{port}")[0] is None:
            return None
        code = ("import socket,sys\ns=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
                f"s.bind(({host!r},{int(port)}));s.listen(64);print('up',flush=True)\n"
                "while True:\n c,_=s.accept();c.close()\n")
        p = subprocess.Popen(["ip", "netns", "exec", self.net, self.python, "-c", code], stdout=subprocess.PIPE, text=True)
        assert p.stdout is not None and p.stdout.readline().strip() == "up"
        return p

    # -- what only the whole cluster shows ------------------------------------------------------
    def cluster_checks(self, all_seeds: list[seeds.Seed], booted: list[seeds.Seed]) -> None:
        from . import cluster
        for step, problem in cluster.checks(self, all_seeds, booted):
            if problem:
                self.fail("cluster", step, problem)
                return
            self.line("cluster", step, "ok")


def rehearse(out: Path, *, faults: dict | None = None, keep: Path | None = None, say=print,
             running: dict | None = None, boot: list[str] | None = None) -> Result:
    """Play the first boot of every node of the rendered cluster at ``out``; or, with
    ``running`` (the state a rehearsal left, as a day-2 test changed it), boot only the nodes
    in ``boot`` against that running cluster."""
    if os.geteuid() != 0:
        raise SystemExit("the rehearsal needs root (namespaces, mounts, chroot), as CI runs")
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bakery-rehearsal-", dir=keep))
    try:
        start = time.monotonic()
        result = Lab(out.resolve(), work, faults=faults, say=say, running=running, boot=boot).run()
        result.work = work if keep is not None else None
        result.lines.append(f"rehearsed in {time.monotonic() - start:.1f}s")
        return result
    finally:
        if keep is None:
            with contextlib.suppress(OSError):
                shutil.rmtree(work)
