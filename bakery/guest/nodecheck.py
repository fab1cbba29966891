#!/usr/bin/env python3
"""bakery-node-check: prove that a node can run kubeadm, before it tries.

This file is copied verbatim into the node image as /usr/local/sbin/bakery-node-check and
must run there with nothing but the Python 3 standard library (Python 3.8 or later). The
bake runs it as its last provisioner before sealing (``--stage bake``); first boot runs it
again before kubeadm (``--stage firstboot`` with the node's address and the endpoint).

It reads what to expect, every fact it verifies (versions, images, kernel modules, sysctls,
ports, the CRI socket), from the file named by ``--expected`` (node-check.json), which
bakery computes from the same plan as the bake and bakes beside it, so the bake and the
check cannot disagree and no fact is written twice.

One line per check: ``PASS name: what was seen`` or ``FAIL name: what is wrong -- fix: how``.
Exit status 1 when anything failed, 0 otherwise. Like kubeadm's
--ignore-preflight-errors, ``--ignore NAME[,NAME]`` and the file
/etc/bakery/node-check.ignore (one name a line) turn chosen failures into warnings.
"""
from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import datetime
import hashlib
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import sys

IGNORE_FILE = "/etc/bakery/node-check.ignore"


# --- parsing of real command outputs (unit-tested against captured outputs) -------------

def parse_proc_swaps(text: str) -> list[str]:
    """Active swap devices/files from /proc/swaps (the first line is a header)."""
    return [line.split()[0] for line in text.splitlines()[1:] if line.strip()]


def parse_fstab_swaps(text: str) -> list[str]:
    """Uncommented /etc/fstab lines whose type is swap."""
    out = []
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) >= 3 and fields[2] == "swap":
            out.append(line.strip())
    return out


def parse_sysctl(text: str) -> dict[str, str]:
    """`sysctl -a` style lines ("key = value") into a dict."""
    out = {}
    for line in text.splitlines():
        if " = " in line:
            key, _, value = line.partition(" = ")
            out[key.strip()] = value.strip()
        elif "=" in line:
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def _find_runc_options(config: dict):
    """The runc runtime's options in `crictl info` config, for containerd 1.x and 2.x."""
    containerd = config.get("containerd") or {}
    runtimes = containerd.get("runtimes") or {}
    runc = runtimes.get("runc") or {}
    options = runc.get("options")
    if isinstance(options, dict):
        return options
    return None


def parse_crictl_info(text: str) -> dict:
    """From `crictl info` JSON: runtime readiness, runc's SystemdCgroup, the sandbox image."""
    doc = json.loads(text)
    status = doc.get("status") or {}
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    config = doc.get("config") or {}
    options = _find_runc_options(config)
    sandbox = config.get("sandboxImage")
    if not sandbox:
        pinned = config.get("pinnedImages") or {}
        sandbox = pinned.get("sandbox") or pinned.get("Sandbox")
    return {
        "runtime_ready": conditions.get("RuntimeReady") is True,
        "systemd_cgroup": None if options is None else options.get("SystemdCgroup"),
        "sandbox_image": sandbox,
    }


def parse_containerd_sandbox(text: str) -> str | None:
    """The sandbox (pause) image from `containerd config dump` or config.toml: `sandbox_image`
    under the CRI plugin (config version 2) or `sandbox` under `pinned_images` (versions 3 and 4).
    containerd 2.x no longer reports it in `crictl info`."""
    section = ""
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("["):
            section = line
            continue
        key, sep, value = line.partition("=")
        if not sep:
            continue
        key, value = key.strip(), value.strip().strip("'\"")
        if key == "sandbox_image" and value:
            return value
        if key == "sandbox" and "pinned_images" in section and value:
            return value
    return None


def parse_crictl_images(text: str) -> set[str]:
    """Every repo tag and repo digest (name@sha256:..., an image pulled by digest has no tag)
    from `crictl images -o json`."""
    doc = json.loads(text)
    tags = set()
    for image in doc.get("images") or []:
        tags.update(image.get("repoTags") or [])
        tags.update(image.get("repoDigests") or [])
    return tags


def parse_ctr_images(text: str) -> set[str]:
    """Image references from `ctr -n k8s.io images ls -q`."""
    return {line.strip() for line in text.splitlines() if line.strip() and not line.startswith("sha256:")}


def normalize_image(ref: str) -> str:
    """The reference as containerd's CRI stores it (distribution/reference ParseNormalizedNamed):
    docker.io/library/x:tag for x:tag, docker.io/x:tag and library/x:tag; name@digest for
    name:tag@digest (a pull by digest records the digest, not the tag)."""
    name = ref
    first = name.split("/", 1)[0]
    if "/" not in name:
        name = "docker.io/library/" + name
    elif "." not in first and ":" not in first and first != "localhost":
        name = "docker.io/" + name
    if name.startswith("docker.io/") and name.count("/") == 1:
        name = "docker.io/library/" + name[len("docker.io/"):]
    if "@" in name:
        repo, digest = name.split("@", 1)
        head, _, last = repo.rpartition("/")
        name = f"{head}/{last.split(':', 1)[0]}@{digest}"
    return name


def parse_pem_bundle(text: str) -> set[str]:
    """SHA-256 (hex) of the DER of every certificate in a PEM bundle such as
    /etc/ssl/certs/ca-certificates.crt (update-ca-certificates concatenates the PEM files)."""
    out = set()
    body: list[str] | None = None
    for line in text.splitlines():
        line = line.strip()
        if line == "-----BEGIN CERTIFICATE-----":
            body = []
        elif line == "-----END CERTIFICATE-----" and body is not None:
            with contextlib.suppress(binascii.Error, ValueError):  # a damaged entry matches nothing
                out.add(hashlib.sha256(base64.b64decode("".join(body), validate=True)).hexdigest())
            body = None
        elif body is not None:
            body.append(line)
    return out


def parse_dpkg_query(text: str) -> dict[str, tuple[str, str]]:
    """`dpkg-query -W -f='${Package} ${Version} ${db:Status-Abbrev}\\n'`: name -> (version, status)."""
    out = {}
    for line in text.splitlines():
        fields = line.split(None, 2)
        if len(fields) >= 2:
            out[fields[0].split(":")[0]] = (fields[1], fields[2].strip() if len(fields) > 2 else "")
    return out


def parse_listening_ports(*tables: str) -> set[int]:
    """Ports in state LISTEN (0A) from /proc/net/tcp and /proc/net/tcp6."""
    ports = set()
    for text in tables:
        for line in text.splitlines()[1:]:
            fields = line.split()
            if len(fields) > 3 and fields[3] == "0A":
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def parse_ip_addresses(text: str) -> dict[str, list[str]]:
    """`ip -o -4 addr show`: interface -> [address/prefix]."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[2] == "inet":
            out.setdefault(fields[1], []).append(fields[3])
    return out


def parse_version_word(text: str) -> str:
    """'Kubernetes v1.36.3' / 'v1.36.3' / JSON with gitVersion -> '1.36.3'."""
    text = text.strip()
    if text.startswith("{"):
        doc = json.loads(text)
        text = (doc.get("clientVersion") or doc).get("gitVersion", "")
    for word in text.split():
        word = word.strip(",")
        if word[:1] == "v" and word[1:2].isdigit():
            return word[1:].split("+")[0]
    return text.lstrip("v")


# --- the system, behind one small seam ----------------------------------------------------

class System:
    """Reads the running system. Tests point `root` at a folder of captured files."""

    def __init__(self, root: str = "/"):
        self.root = root

    def read(self, path: str) -> str | None:
        try:
            with open(os.path.join(self.root, path.lstrip("/")), encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return None

    def exists(self, path: str) -> bool:
        return os.path.exists(os.path.join(self.root, path.lstrip("/")))

    def read_head(self, path: str, size: int) -> bytes:
        """The first bytes of a file, empty when it cannot be read."""
        try:
            with open(os.path.join(self.root, path.lstrip("/")), "rb") as f:
                return f.read(size)
        except OSError:
            return b""

    def listdir(self, path: str) -> list[str]:
        try:
            return sorted(os.listdir(os.path.join(self.root, path.lstrip("/"))))
        except OSError:
            return []

    def run(self, *argv: str, timeout: float = 30) -> tuple[int, str] | None:
        """(exit code, stdout) or None when the program is missing."""
        if shutil.which(argv[0]) is None:
            return None
        try:
            p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
                               universal_newlines=True)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return 124, str(exc)
        return p.returncode, p.stdout

    def now(self) -> datetime.datetime:
        return datetime.datetime.now(datetime.timezone.utc)


class Result:
    def __init__(self, name: str, ok: bool, seen: str, fix: str = ""):
        self.name, self.ok, self.seen, self.fix = name, ok, seen, fix

    def line(self, ignored: bool = False) -> str:
        if self.ok:
            return f"PASS {self.name}: {self.seen}"
        word = "WARN" if ignored else "FAIL"
        text = f"{word} {self.name}: {self.seen}"
        if self.fix:
            text += f" -- fix: {self.fix}"
        if ignored:
            text += " (ignored)"
        return text


# --- the checks ------------------------------------------------------------------------------

def check_swap(sys_: System, exp: dict) -> list[Result]:
    out = []
    active = parse_proc_swaps(sys_.read("/proc/swaps") or "Filename\n")
    out.append(Result("swap-active", not active, "active swap: " + ", ".join(active) if active else "no active swap",
                      "swapoff -a"))
    fstab = parse_fstab_swaps(sys_.read("/etc/fstab") or "")
    out.append(Result("swap-fstab", not fstab,
                      "swap in /etc/fstab: " + "; ".join(fstab) if fstab else "no swap line in /etc/fstab",
                      "comment out the swap lines in /etc/fstab"))
    zram = [d for d in sys_.listdir("/sys/block") if d.startswith("zram")
            and (sys_.read(f"/sys/block/{d}/disksize") or "0").strip() not in ("0", "")]
    units = []
    r = sys_.run("systemctl", "list-units", "--type=swap", "--state=active", "--no-legend", "--plain")
    if r and r[0] == 0:
        units = [ln.split()[0] for ln in r[1].splitlines() if ln.strip()]
    bad = zram + units
    out.append(Result("swap-units", not bad,
                      "swap units or zram active: " + ", ".join(bad) if bad else "no swap unit or zram device",
                      "systemctl mask the swap units; remove zram-generator/zram-tools"))
    return out


def check_kernel(sys_: System, exp: dict) -> list[Result]:
    modules, sysctls = exp["kernelModules"], exp["sysctls"]
    missing = [m for m in modules if not sys_.exists(f"/sys/module/{m}")]
    out = [Result("kernel-modules", not missing,
                  "not loaded: " + ", ".join(missing) if missing else " and ".join(modules) + " loaded",
                  "modprobe " + " ".join(missing) + "; list them in /etc/modules-load.d/k8s.conf")]
    wrong = []
    for key, want in sysctls.items():
        value = (sys_.read("/proc/sys/" + key.replace(".", "/")) or "").strip()
        if value != want:
            wrong.append(f"{key} = {value or '(missing)'} (want {want})")
    out.append(Result("sysctl", not wrong,
                      ", ".join(wrong) if wrong else ", ".join(f"{k} = {v}" for k, v in sysctls.items()),
                      "set them in /etc/sysctl.d/k8s.conf and run sysctl --system"))
    return out


def _crictl(sys_: System, exp: dict, *args: str):
    return sys_.run("crictl", "--runtime-endpoint", exp["criSocket"],
                    *args)


def check_containerd(sys_: System, exp: dict) -> list[Result]:
    out = []
    r = sys_.run("systemctl", "is-enabled", "containerd")
    state = (r[1].strip() if r else "systemctl missing") or "unknown"
    out.append(Result("containerd-enabled", bool(r) and r[0] == 0 and state == "enabled",
                      f"containerd.service is {state}", "systemctl enable --now containerd"))
    r = _crictl(sys_, exp, "info")
    if r is None:
        out.append(Result("containerd-socket", False, "crictl is not installed", "install crictl (cri-tools)"))
        return out
    if r[0] != 0:
        out.append(Result("containerd-socket", False, "crictl info failed: " + r[1].strip().splitlines()[-1:][0]
                          if r[1].strip() else "crictl info failed", "systemctl restart containerd; journalctl -u containerd"))
        return out
    try:
        info = parse_crictl_info(r[1])
    except (ValueError, AttributeError):
        out.append(Result("containerd-socket", False, "crictl info printed no CRI status (is this a real crictl?)",
                          "install crictl (cri-tools) matching the Kubernetes minor"))
        return out
    out.append(Result("containerd-socket", info["runtime_ready"], "the CRI socket answers, runtime "
                      + ("ready" if info["runtime_ready"] else "NOT ready"), "journalctl -u containerd"))
    cg = info["systemd_cgroup"]
    out.append(Result("containerd-cgroup", cg is True,
                      "runc uses the systemd cgroup driver" if cg is True else f"runc SystemdCgroup is {cg}",
                      "set SystemdCgroup = true for the runc runtime in /etc/containerd/config.toml"))
    want = exp.get("pauseImage")
    if want:
        have = info["sandbox_image"]
        if not have:  # containerd 2.x: ask containerd for its effective configuration
            r = sys_.run("containerd", "config", "dump")
            have = parse_containerd_sandbox(r[1]) if r and r[0] == 0 else None
        out.append(Result("sandbox-image", have == want, f"sandbox image {have}" + ("" if have == want else f", want {want}"),
                          f"set the sandbox image to {want} in /etc/containerd/config.toml"))
    return out


def check_packages(sys_: System, exp: dict) -> list[Result]:
    want = exp.get("kubernetesVersion")
    out = []
    probes = {"kubeadm": ("kubeadm", "version", "-o", "short"), "kubelet": ("kubelet", "--version"),
              "kubectl": ("kubectl", "version", "--client", "-o", "json")}
    wrong = []
    for name, argv in probes.items():
        r = sys_.run(*argv)
        if r is None:
            wrong.append(f"{name} missing")
            continue
        have = parse_version_word(r[1]) if r[0] == 0 else "?"
        if have != want:
            wrong.append(f"{name} {have}")
    out.append(Result("kubernetes-version", not wrong,
                      ", ".join(wrong) + f" (want {want})" if wrong else f"kubeadm, kubelet, kubectl {want}",
                      "reinstall the pinned version (the image was baked from another cluster.yaml?)"))
    helm = exp.get("helmVersion")
    if helm:
        r = sys_.run("helm", "version", "--template", "{{ .Version }}")
        have = r[1].strip() if r and r[0] == 0 else ("missing" if r is None else "?")
        out.append(Result("helm-version", have == helm, f"helm {have}" + ("" if have == helm else f" (want {helm})"),
                          "re-bake the image: the first boot installs the pod network plugin with this helm"))
    if exp.get("packageSource", "pkgs.k8s.io") == "pkgs.k8s.io":
        r = sys_.run("apt-mark", "showhold")
        held = set((r[1] if r and r[0] == 0 else "").split())
        missing = [p for p in ("kubeadm", "kubelet", "kubectl") if p not in held]
        out.append(Result("kubernetes-held", not missing,
                          "not held: " + ", ".join(missing) if missing else "kubeadm, kubelet, kubectl held",
                          "apt-mark hold " + " ".join(missing)))
    return out


def check_images(sys_: System, exp: dict) -> list[Result]:
    want = list(exp.get("images") or [])
    r = sys_.run("kubeadm", "config", "images", "list", "--kubernetes-version", "v" + exp.get("kubernetesVersion", ""))
    if r and r[0] == 0:
        kubeadms = [ln.strip() for ln in r[1].splitlines() if ln.strip() and "/" in ln]
        if exp.get("kubeProxy") is False:
            # the pod network plugin replaces kube-proxy: kubeadm init skips its addon, the bake
            # did not pull its image (`kubeadm config images list` ignores skipPhases)
            kubeadms = [i for i in kubeadms if "/kube-proxy:" not in i]
        want += kubeadms
    r = _crictl(sys_, exp, "images", "-o", "json")
    have = None
    if r is not None and r[0] == 0:
        try:
            have = {normalize_image(t) for t in parse_crictl_images(r[1])}
        except (ValueError, AttributeError):
            have = None
    if have is None:
        r = sys_.run("ctr", "-n", "k8s.io", "images", "ls", "-q")
        if r is None or r[0] != 0:
            return [Result("images", False, "cannot list containerd's images (no crictl, no ctr)",
                           "start containerd and install crictl")]
        have = {normalize_image(t) for t in parse_ctr_images(r[1])}
    missing = sorted({w for w in want if normalize_image(w) not in have})
    return [Result("images", not missing,
                   f"missing {len(missing)} of {len(set(want))}: " + ", ".join(missing[:5]) + (" …" if len(missing) > 5 else "")
                   if missing else f"all {len(set(want))} images first boot needs are present",
                   "pull them into the k8s.io namespace (crictl pull), or re-bake the image")]


def check_manifests(sys_: System, exp: dict) -> list[Result]:
    """The pod network plugin's files the bake stored (manifests, chart), unchanged."""
    folder = exp["cniDir"]
    sums = sys_.read(folder + "/SHA256SUMS")
    if sums is None:
        return [Result("cni-files", False, f"{folder}/SHA256SUMS is missing", "re-bake the image")]
    bad = []
    names = []
    for line in sums.splitlines():
        if not line.strip():
            continue
        digest, _, name = line.partition("  ")
        name = name.strip().lstrip("*")
        names.append(name)
        path = os.path.join(sys_.root, folder.lstrip("/"), name)
        try:
            with open(path, "rb") as f:
                have = hashlib.sha256(f.read()).hexdigest()
        except OSError:
            bad.append(f"{name} missing")
            continue
        if have != digest.strip():
            bad.append(f"{name} changed")
    for name in exp.get("cniAssets") or []:
        if name not in names:
            bad.append(f"{name} not recorded")
    return [Result("cni-files", not bad and bool(names),
                   ", ".join(bad) if bad else f"{len(names)} files of the pod network plugin match their recorded sha256",
                   "re-bake the image; these files must not change after the bake")]


def check_site(sys_: System, exp: dict) -> list[Result]:
    """The site's part of the image (issue 18): its CAs in the system bundle, its extra
    packages (pinned ones at their version and held), containerd's registry mirror files, and
    the time sync client cloud-init configures."""
    out = []
    cas = exp.get("caCertificates") or []
    if cas:
        bundle_path = exp["caBundle"]
        bundle = parse_pem_bundle(sys_.read(bundle_path) or "")
        missing = [ca["file"] for ca in cas if ca["sha256"] not in bundle]
        out.append(Result("site-ca", not missing,
                          f"not in {bundle_path}: " + ", ".join(missing) if missing
                          else f"{len(cas)} site CA certificate(s) in {bundle_path}",
                          "install them under /usr/local/share/ca-certificates and run update-ca-certificates"))
    pkgs = exp.get("extraPackages") or []
    if pkgs:
        names = [p["name"] for p in pkgs]
        r = sys_.run("dpkg-query", "-W", "-f=${Package} ${Version} ${db:Status-Abbrev}\n", *names)
        have = parse_dpkg_query(r[1]) if r else {}
        r = sys_.run("apt-mark", "showhold")
        held = set((r[1] if r and r[0] == 0 else "").split())
        wrong = []
        for p in pkgs:
            version, status = have.get(p["name"], ("", ""))
            if not status.startswith("ii"):
                wrong.append(f"{p['name']} not installed")
            elif p.get("version") and version != p["version"]:
                wrong.append(f"{p['name']} {version} (want {p['version']})")
            elif p.get("version") and p["name"] not in held:
                wrong.append(f"{p['name']} not held")
        out.append(Result("site-packages", not wrong,
                          ", ".join(wrong) if wrong else f"{len(pkgs)} extra package(s) installed, pinned ones held",
                          "re-bake the image (spec.image.extraPackages)"))
    hosts = exp.get("registryHosts") or []
    if hosts:
        missing = [h for h in hosts if not sys_.exists(h)]
        out.append(Result("registry-mirrors", not missing,
                          "missing: " + ", ".join(missing) if missing else f"{len(hosts)} registry host file(s) in place",
                          "re-bake the image (spec.mirrors.registries)"))
    daemon = exp.get("timeDaemon")
    if daemon:
        ok = sys_.exists(daemon["file"])
        out.append(Result("time-daemon", ok, f"{daemon['file']} " + ("is present" if ok else "is missing"),
                          f"install {daemon['package']} (cloud-init's ntp module configures it)"))
    return out


def elf_machine(head: bytes) -> int | None:
    """e_machine of an ELF file's header (its first 20 bytes), None for any other file: a
    script runs on every architecture. The field sits at offset 18 in the byte order of
    EI_DATA (elf(5))."""
    if len(head) < 20 or head[:4] != b"\x7fELF" or head[5] not in (1, 2):
        return None
    return int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")


def check_platform(sys_: System, exp: dict) -> list[Result]:
    """The architecture and firmware the image was baked for (issue 21)."""
    p = exp.get("platform")
    if not p:
        return []
    r = sys_.run("uname", "-m")
    machine = r[1].strip() if r and r[0] == 0 else "(uname failed)"
    r = sys_.run("dpkg", "--print-architecture")
    deb = r[1].strip() if r and r[0] == 0 else "(dpkg failed)"
    wrong = []
    checked = 0
    for path in p["binaries"]:
        found = elf_machine(sys_.read_head(path, 20))
        if found is not None:
            checked += 1
            if found != p["elfMachine"]:
                wrong.append(f"{path} is for ELF machine {found}")
    ok = machine == p["uname"] and deb == p["arch"] and not wrong
    seen = f"kernel {machine}, dpkg {deb}, {checked} program(s) for ELF machine {p['elfMachine']}"
    if wrong:
        seen += "; " + ", ".join(wrong)
    out = [Result("arch", ok, seen + ("" if ok else f" (want {p['arch']}: {p['uname']})"),
                  f"boot this image on a {p['arch']} machine, or bake one for this machine's architecture")]
    efi = sys_.exists("/sys/firmware/efi")
    booted = "uefi" if efi else "bios"
    if p["firmware"] == "uefi":
        boot_file = p["efiBootFile"]
        have = sys_.exists(boot_file)
        out.append(Result("firmware", efi and have,
                          f"booted {booted}, {boot_file} " + ("present" if have else "missing"),
                          "boot the VM with UEFI firmware (OVMF/AAVMF); a missing removable-path loader "
                          "means the image boots only with its own NVRAM"))
    else:
        out.append(Result("firmware", not efi, f"booted {booted} (the image was baked for bios)",
                          "boot the VM with BIOS firmware, as the image was installed"))
    return out


def check_firstboot(sys_: System, exp: dict, args) -> list[Result]:
    out = []
    r = sys_.run("ip", "-o", "-4", "addr", "show")
    addrs = parse_ip_addresses(r[1]) if r and r[0] == 0 else {}
    where = [ifname for ifname, items in addrs.items() if any(a.split("/")[0] == args.node_address for a in items)]
    out.append(Result("node-address", bool(where),
                      f"{args.node_address} is on {', '.join(where)}" if where
                      else f"{args.node_address} is on no interface (have: "
                      + ", ".join(f"{i} {' '.join(a)}" for i, a in sorted(addrs.items())) + ")",
                      "check network-config: the node NIC's MAC or name must match this VM"))
    if args.endpoint:
        host, _, port = args.endpoint.rpartition(":")
        try:
            resolved = sorted({ai[4][0] for ai in socket.getaddrinfo(host, int(port), socket.AF_INET)})
        except (OSError, ValueError) as exc:
            resolved = []
            seen = f"{host} does not resolve ({exc})"
        else:
            seen = f"{host} resolves to {', '.join(resolved)}"
        net = ipaddress.ip_network(args.node_cidr) if args.node_cidr else None
        ok = bool(resolved) and (net is None or all(ipaddress.ip_address(a) in net for a in resolved))
        if resolved and not ok:
            seen += f", outside the node network {net}"
        out.append(Result("endpoint", ok, seen, "the endpoint must be a control-plane address or the VIP on the node network"))
    ports = parse_listening_ports(sys_.read("/proc/net/tcp") or "", sys_.read("/proc/net/tcp6") or "")
    want = tuple(exp["ports"][args.role])
    if args.role == "control-plane" and args.endpoint:
        # the API server listens on the endpoint's port (bindPort)
        api_port = int(args.endpoint.rpartition(":")[2])
        want = (api_port,) + tuple(p for p in want if p != api_port)
    busy = sorted(p for p in want if p in ports)
    out.append(Result("ports-free", not busy,
                      "in use: " + ", ".join(map(str, busy)) if busy else "ports " + ", ".join(map(str, want)) + " are free",
                      "stop what listens there (ss -ltnp)"))
    if args.not_before:
        nb = datetime.datetime.fromisoformat(args.not_before.replace("Z", "+00:00"))
        now = sys_.now()
        out.append(Result("clock", now >= nb,
                          f"the clock says {now:%Y-%m-%dT%H:%M:%SZ}" + ("" if now >= nb else
                                                                        f", before the cluster CA's start {nb:%Y-%m-%dT%H:%M:%SZ}"),
                          "fix the hypervisor clock or NTP: certificates are not valid yet"))
    return out


GROUPS = {"swap": check_swap, "kernel": check_kernel, "containerd": check_containerd,
          "packages": check_packages, "images": check_images, "manifests": check_manifests,
          "site": check_site, "platform": check_platform}


def run(argv: list[str] | None = None, sys_: System | None = None, stream=None) -> int:
    ap = argparse.ArgumentParser(prog="bakery-node-check", description=__doc__.split("\n\n")[0])
    ap.add_argument("--stage", choices=["bake", "firstboot"], default="bake")
    ap.add_argument("--expected", required=True, help="the expectations file the bake wrote beside this program")
    ap.add_argument("--node-address")
    ap.add_argument("--node-cidr")
    ap.add_argument("--endpoint")
    ap.add_argument("--role", choices=["control-plane", "worker"], default="worker")
    ap.add_argument("--not-before", help="ISO time before which the clock is wrong (the CA's start)")
    ap.add_argument("--ignore", default="", help="comma-separated check names whose failure only warns")
    args = ap.parse_args(argv)
    sys_ = sys_ or System()
    stream = stream or sys.stdout
    text = sys_.read(args.expected)
    if text is None:
        print(f"FAIL setup: {args.expected} is missing -- fix: this image was not baked by bakery", file=stream)
        return 1
    exp = json.loads(text)
    ignored = {s.strip() for s in args.ignore.split(",") if s.strip()}
    ignored |= {ln.strip() for ln in (sys_.read(IGNORE_FILE) or "").splitlines()
                if ln.strip() and not ln.startswith("#")}
    results: list[Result] = []
    for fn in GROUPS.values():
        results += fn(sys_, exp)
    if args.stage == "firstboot":
        if not args.node_address:
            ap.error("--stage firstboot needs --node-address")
        results += check_firstboot(sys_, exp, args)
    failed = 0
    for res in results:
        is_ignored = not res.ok and res.name in ignored
        print(res.line(is_ignored), file=stream)
        failed += (not res.ok and not is_ignored)
    summary = f"bakery-node-check ({args.stage}): {len(results)} checks, {failed} failing"
    print(summary, file=stream)
    stream.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run())
