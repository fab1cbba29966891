"""The node check (issue 9): its parsing of real command outputs, and its verdicts.

Captured outputs live in tests/data/captured/ (their sources: README.md there). The check
runs in-process against a System whose files are a temporary tree and whose commands are
canned outputs; the VM boot test runs it for real inside a booted VM.
"""
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bakery.guest import nodecheck as nc

from conftest import ROOT

CAP = ROOT / "tests" / "data" / "captured"


def cap(name: str) -> str:
    return (CAP / name).read_text()


def test_proc_swaps_real():
    assert nc.parse_proc_swaps(cap("proc-swaps-none.txt")) == []
    assert nc.parse_proc_swaps(cap("proc-swaps-file.txt")) == ["/tmp/swaptest"]


@pytest.mark.parametrize("name, systemd, sandbox", [
    ("crictl-info-containerd-1.7.json", False, "registry.k8s.io/pause:3.8"),
    ("crictl-info-containerd-2.1.5.json", True, None),  # 2.x reports no sandbox image
    ("crictl-info-containerd-2.2.1.json", True, None),
])
def test_crictl_info_real(name, systemd, sandbox):
    info = nc.parse_crictl_info(cap(name))
    assert info == {"runtime_ready": True, "systemd_cgroup": systemd, "sandbox_image": sandbox}


def test_containerd_config_dump_real():
    assert nc.parse_containerd_sandbox(cap("containerd-1.6-config-dump.toml")) == "registry.k8s.io/pause:3.10"
    v3 = ("version = 3\n[plugins.'io.containerd.cri.v1.images'.pinned_images]\n"
          "  sandbox = 'registry.k8s.io/pause:3.10.2'\n")
    assert nc.parse_containerd_sandbox(v3) == "registry.k8s.io/pause:3.10.2"


def test_crictl_images_fixture():
    assert "docker.io/kindest/kindnetd:v20230511-dc714da8" in nc.parse_crictl_images(cap("crictl-images-kind-fixture.json"))


def test_version_outputs_real():
    assert nc.parse_version_word(cap("kubeadm-version-o-short-1.36.1.txt")) == "1.36.1"
    assert nc.parse_version_word(cap("kubelet-version-1.36.1.txt")) == "1.36.1"
    assert nc.parse_version_word(cap("kubectl-version-client-1.36.1.txt")) == "1.36.1"
    assert cap("apt-mark-showhold.txt").split() == ["kubeadm", "kubectl", "kubelet"]


def test_fstab_swaps():
    assert nc.parse_fstab_swaps(cap("fstab-ubuntu-installer.txt")) == ["/swap.img\tnone\tswap\tsw\t0\t0"]
    assert nc.parse_fstab_swaps(cap("fstab-ubuntu-installer.txt").replace("/swap.img", "#/swap.img")) == []


def test_sysctl_real():
    values = nc.parse_sysctl(cap("sysctl-a-debian12.txt"))
    assert values["net.ipv4.ip_forward"] == "0"  # this machine does not forward
    assert values["net.bridge.bridge-nf-call-iptables"] == "1"


def test_listening_ports_real():
    ports = nc.parse_listening_ports(cap("proc-net-tcp.txt"), cap("proc-net-tcp6.txt"))
    assert 2024 in ports  # 0x07E8, LISTEN (0A) when captured
    # an ESTABLISHED (01) or TIME_WAIT (06) socket's local port is not listening
    assert 0xEA60 not in ports


def test_ip_addresses_real():
    addrs = nc.parse_ip_addresses(cap("ip-o-4-addr.txt"))
    assert addrs["lo"] == ["127.0.0.1/8"]
    assert any(a.startswith("192.0.2.") for a in addrs["eth0"])


@pytest.mark.parametrize("text, want", [
    ("Kubernetes v1.36.3\n", "1.36.3"),
    ("v1.35.7\n", "1.35.7"),
    ('{"clientVersion": {"gitVersion": "v1.34.10", "major": "1"}}', "1.34.10"),
])
def test_version_words(text, want):
    assert nc.parse_version_word(text) == want


def test_normalize_image():
    assert nc.normalize_image("calico/node:v3.29.7") == "docker.io/calico/node:v3.29.7"
    assert nc.normalize_image("quay.io/calico/node:v3.32.1") == "quay.io/calico/node:v3.32.1"
    assert nc.normalize_image("busybox:1") == "docker.io/library/busybox:1"


class FakeSystem(nc.System):
    """Files from a temporary tree; commands answered from a table of captured outputs."""

    def __init__(self, root, commands):
        super().__init__(str(root))
        self.commands = commands

    def run(self, *argv, timeout=30):
        for prefix, answer in self.commands.items():
            if tuple(argv[: len(prefix)]) == prefix:
                return answer
        return None

    def now(self):
        import datetime
        return datetime.datetime(2026, 11, 27, tzinfo=datetime.UTC)


def healthy_tree(root: Path, exp: dict):
    def w(path, text):
        p = root / path.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    w("/opt/bakery/node-check.json", json.dumps(exp))
    w("/proc/swaps", cap("proc-swaps-none.txt"))
    w("/etc/fstab", cap("fstab-ubuntu-installer.txt").replace("/swap.img", "#/swap.img"))
    for m in exp["kernelModules"]:
        (root / "sys/module" / m).mkdir(parents=True)
    for key, value in exp["sysctls"].items():
        w("/proc/sys/" + key.replace(".", "/"), value + "\n")
    manifest = b"kind: CustomResourceDefinition\n"
    w("/opt/bakery/calico/operator-crds.yaml", manifest.decode())
    import hashlib
    w("/opt/bakery/calico/SHA256SUMS", hashlib.sha256(manifest).hexdigest() + "  operator-crds.yaml\n")
    w("/proc/net/tcp", cap("proc-net-tcp.txt"))
    if exp.get("timeDaemon"):
        w(exp["timeDaemon"]["file"], "")  # the binary cloud-init's ntp module looks for
    platform = exp.get("platform") or {}
    if platform.get("firmware") == "uefi":
        (root / "sys/firmware/efi").mkdir(parents=True)
        w(platform["efiBootFile"], "MZ")


EXP = {"kubernetesVersion": "1.36.3", "packageSource": "pkgs.k8s.io", "pauseImage": "registry.k8s.io/pause:3.10.2",
       "images": ["registry.k8s.io/pause:3.10.2", "quay.io/calico/node:v3.32.1"],
       "cniDir": "/opt/bakery/calico", "cniAssets": ["operator-crds.yaml"],
       "criSocket": "unix:///run/containerd/containerd.sock", "kernelModules": ["overlay", "br_netfilter"],
       "sysctls": {"net.ipv4.ip_forward": "1", "net.bridge.bridge-nf-call-iptables": "1",
                   "net.bridge.bridge-nf-call-ip6tables": "1"},
       "ports": {"control-plane": [2379, 2380, 10250, 10257, 10259], "worker": [10250]}}
EXPECTED = ["--expected", "/opt/bakery/node-check.json"]


def crictl_info(systemd=True, sandbox="registry.k8s.io/pause:3.10.2"):
    return json.dumps({"status": {"conditions": [{"type": "RuntimeReady", "status": True}]},
                       "config": {"containerd": {"runtimes": {"runc": {"options": {"SystemdCgroup": systemd}}}},
                                  "sandboxImage": sandbox}})


CRICTL = ("crictl", "--runtime-endpoint", "unix:///run/containerd/containerd.sock")
CRICTL_INFO, CRICTL_IMAGES = CRICTL + ("info",), CRICTL + ("images",)


def commands(over):
    table = {
        ("systemctl", "is-enabled"): (0, "enabled\n"),
        ("systemctl", "list-units"): (0, ""),
        CRICTL_INFO: (0, crictl_info()),
        CRICTL_IMAGES:
            (0, json.dumps({"images": [{"repoTags": ["registry.k8s.io/pause:3.10.2", "quay.io/calico/node:v3.32.1",
                                                     "registry.k8s.io/etcd:3.6.9-0"]}]})),
        ("kubeadm", "version"): (0, "v1.36.3\n"),
        ("kubeadm", "config"): (0, "registry.k8s.io/etcd:3.6.9-0\n"),
        ("kubelet", "--version"): (0, "Kubernetes v1.36.3\n"),
        ("kubectl", "version"): (0, '{"clientVersion": {"gitVersion": "v1.36.3"}}'),
        ("apt-mark", "showhold"): (0, "kubeadm\nkubectl\nkubelet\n"),
        ("ip", "-o"): (0, cap("ip-o-4-addr.txt")),
        ("uname", "-m"): (0, "x86_64\n"),
        ("dpkg", "--print-architecture"): (0, "amd64\n"),
    }
    table.update(over)
    return table


def run_check(tmp_path, argv=(), over=None):
    healthy = tmp_path / "root"
    if not healthy.exists():
        healthy_tree(healthy, EXP)
    out = io.StringIO()
    rc = nc.run([*EXPECTED, *argv], FakeSystem(healthy, commands(over or {})), out)
    return rc, out.getvalue()


def test_healthy_node_passes(tmp_path):
    rc, text = run_check(tmp_path)
    assert rc == 0, text
    assert "FAIL" not in text and text.count("PASS") >= 10


def test_swap_file_fails_with_fix(tmp_path):
    healthy_tree(tmp_path / "root", EXP)
    (tmp_path / "root/proc/swaps").write_text(cap("proc-swaps-file.txt"))
    rc, text = run_check(tmp_path)
    assert rc == 1
    line = next(ln for ln in text.splitlines() if ln.startswith("FAIL swap-active"))
    assert "/tmp/swaptest" in line and "swapoff -a" in line


def test_wrong_sysctl_fails(tmp_path):
    healthy_tree(tmp_path / "root", EXP)
    (tmp_path / "root/proc/sys/net/ipv4/ip_forward").write_text("0\n")
    rc, text = run_check(tmp_path)
    assert rc == 1 and "FAIL sysctl: net.ipv4.ip_forward = 0" in text


def test_containerd2_sandbox_from_config_dump(tmp_path):
    key = CRICTL_INFO
    dump = ("version = 3\n[plugins.'io.containerd.cri.v1.images'.pinned_images]\n"
            "  sandbox = 'registry.k8s.io/pause:3.10.2'\n")
    rc, text = run_check(tmp_path, over={key: (0, cap("crictl-info-containerd-2.2.1.json")),
                                         ("containerd", "config", "dump"): (0, dump)})
    assert rc == 0, text
    assert "PASS containerd-cgroup" in text and "PASS sandbox-image: sandbox image registry.k8s.io/pause:3.10.2" in text


def test_cgroupfs_runtime_and_wrong_pause_fail(tmp_path):
    key = CRICTL_INFO
    rc, text = run_check(tmp_path, over={key: (0, crictl_info(systemd=False, sandbox="registry.k8s.io/pause:3.8"))})
    assert rc == 1
    assert "FAIL containerd-cgroup: runc SystemdCgroup is False" in text
    assert "FAIL sandbox-image: sandbox image registry.k8s.io/pause:3.8, want registry.k8s.io/pause:3.10.2" in text


def test_wrong_version_and_unheld_fail(tmp_path):
    rc, text = run_check(tmp_path, over={("kubelet", "--version"): (0, "Kubernetes v1.35.7\n"),
                                         ("apt-mark", "showhold"): (0, "kubeadm\n")})
    assert rc == 1
    assert "FAIL kubernetes-version: kubelet 1.35.7 (want 1.36.3)" in text
    assert "FAIL kubernetes-held: not held: kubelet, kubectl" in text


def test_missing_image_fails(tmp_path):
    key = CRICTL_IMAGES
    rc, text = run_check(tmp_path, over={key: (0, json.dumps({"images": [{"repoTags": ["registry.k8s.io/pause:3.10.2"]}]}))})
    assert rc == 1
    line = next(ln for ln in text.splitlines() if ln.startswith("FAIL images"))
    assert "quay.io/calico/node:v3.32.1" in line and "registry.k8s.io/etcd:3.6.9-0" in line


def test_changed_manifest_fails(tmp_path):
    healthy_tree(tmp_path / "root", EXP)
    (tmp_path / "root/opt/bakery/calico/operator-crds.yaml").write_text("tampered\n")
    rc, text = run_check(tmp_path)
    assert rc == 1 and "FAIL cni-files: operator-crds.yaml changed" in text


def test_ignore_turns_failure_into_warning(tmp_path):
    healthy_tree(tmp_path / "root", EXP)
    (tmp_path / "root/proc/swaps").write_text(cap("proc-swaps-file.txt"))
    rc, text = run_check(tmp_path, ["--ignore", "swap-active"])
    assert rc == 0 and "WARN swap-active" in text and "(ignored)" in text
    (tmp_path / "root/etc/bakery").mkdir(parents=True)
    (tmp_path / "root/etc/bakery/node-check.ignore").write_text("# lab\nswap-active\n")
    rc, text = run_check(tmp_path)
    assert rc == 0


def test_firstboot_checks(tmp_path):
    rc, text = run_check(tmp_path, ["--stage", "firstboot", "--node-address", "192.0.2.2", "--node-cidr",
                                    "192.0.2.0/24", "--endpoint", "127.0.0.1:6443", "--role", "worker",
                                    "--not-before", "2026-11-01T00:00:00Z"])
    assert "PASS node-address: 192.0.2.2 is on eth0" in text
    assert "FAIL endpoint: 127.0.0.1 resolves to 127.0.0.1, outside the node network 192.0.2.0/24" in text
    assert "PASS clock" in text and rc == 1
    rc, text = run_check(tmp_path, ["--stage", "firstboot", "--node-address", "192.168.56.30", "--role",
                                    "control-plane", "--not-before", "2027-01-01T00:00:00Z"])
    assert "FAIL node-address: 192.168.56.30 is on no interface" in text
    assert "FAIL clock" in text and "before the cluster CA's start" in text


def test_control_plane_port_in_use(tmp_path):
    healthy_tree(tmp_path / "root", EXP)
    # a real /proc/net/tcp line, with its port changed to 6443 (0x192B) in LISTEN state
    table = cap("proc-net-tcp.txt").replace("00000000:07E8", "00000000:192B")
    (tmp_path / "root/proc/net/tcp").write_text(table)
    rc, text = run_check(tmp_path, ["--stage", "firstboot", "--node-address", "192.0.2.2", "--role", "control-plane",
                                    "--endpoint", "192.0.2.2:6443"])
    assert "FAIL ports-free: in use: 6443" in text
    # the API server's port is the endpoint's: 6443 in use does not matter when it listens on 7443
    rc, text = run_check(tmp_path, ["--stage", "firstboot", "--node-address", "192.0.2.2", "--role", "control-plane",
                                    "--endpoint", "192.0.2.2:7443"])
    assert "PASS ports-free: ports 7443, 2379, 2380, 10250, 10257, 10259 are free" in text


def test_runs_standalone_with_only_the_stdlib(tmp_path):
    """The image gets this file verbatim: it must run without bakery or any third-party module."""
    script = tmp_path / "bakery-node-check"
    script.write_text((ROOT / "bakery" / "guest" / "nodecheck.py").read_text())
    r = subprocess.run([sys.executable, "-S", "-I", str(script), "--expected", str(tmp_path / "none.json")],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "FAIL setup" in r.stdout, r.stderr


# --- the check in the rendered image ------------------------------------------------------

@pytest.fixture(scope="module")
def lab_packer(renders):
    return renders.example("lab") / "packer"


def test_image_gets_the_check_verbatim_and_executable(lab_packer):
    f = lab_packer / "files/usr/local/sbin/bakery-node-check"
    assert f.read_bytes() == (ROOT / "bakery/guest/nodecheck.py").read_bytes()
    assert f.stat().st_mode & 0o111


def test_expectations_match_what_the_bake_pulls(lab_packer):
    """node-check.json and the image-pull script come from one plan: same images."""
    exp = json.loads((lab_packer / "files/opt/bakery/node-check.json").read_text())
    script = (lab_packer / "scripts/50-images.sh").read_text()
    array = re.search(r"^images=\(.*?^\)", script, re.S | re.M).group(0)
    r = subprocess.run(["bash", "-c", array + '\nprintf "%s\\n" "${images[@]}"'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == exp["images"]
    assert exp["kubernetesVersion"] == "1.36.3" and exp["pauseImage"] == "registry.k8s.io/pause:3.10.2"
    versions = subprocess.run(["bash", "-c", f"set -a; . {lab_packer}/files/opt/bakery/versions.env; "
                               "echo $PAUSE_IMAGE $KUBERNETES_VERSION"], capture_output=True, text=True).stdout.split()
    assert versions == [exp["pauseImage"], exp["kubernetesVersion"]]


def test_bake_runs_the_check_last_before_sealing(lab_packer):
    hcl2 = pytest.importorskip("hcl2")
    build = hcl2.loads((lab_packer / "build.pkr.hcl").read_text())
    names = []
    for block in build["build"][0]["provisioner"]:
        for kind, body in block.items():
            if kind.strip('"') == "shell" and "script" in body:
                names.append(body["name"].strip('"'))
    assert names[-2:] == ["80-node-check", "90-seal"]
    script = (lab_packer / "scripts/80-node-check.sh").read_text()
    last = [ln for ln in script.splitlines() if ln.strip() and not ln.startswith("#")][-1]
    assert last.split() == ["/usr/local/sbin/bakery-node-check", "--stage", "bake", "--expected",
                            "/opt/bakery/node-check.json"]


def test_rendered_expectations_drive_the_check(lab_packer, tmp_path):
    """The check, fed the rendered node-check.json, passes a node that has what it lists and
    fails one image short."""
    exp = json.loads((lab_packer / "files/opt/bakery/node-check.json").read_text())
    root = tmp_path / "root"
    healthy_tree(root, exp)
    # the calico manifests the expectations name, with their sums
    import hashlib
    sums = ""
    for name in exp["cniAssets"]:
        body = f"# {name}\n".encode()
        (root / "opt/bakery/calico" / name).write_bytes(body)
        sums += f"{hashlib.sha256(body).hexdigest()}  {name}\n"
    (root / "opt/bakery/calico/SHA256SUMS").write_text(sums)
    images_key = ("crictl", "--runtime-endpoint", exp["criSocket"], "images")
    info_key = ("crictl", "--runtime-endpoint", exp["criSocket"], "info")
    have = {"images": [{"repoTags": exp["images"] + ["registry.k8s.io/etcd:3.6.9-0"]}]}
    over = {images_key: (0, json.dumps(have)), info_key: (0, crictl_info(sandbox=exp["pauseImage"]))}
    out = io.StringIO()
    rc = nc.run(EXPECTED, FakeSystem(root, commands(over)), out)
    assert rc == 0, out.getvalue()
    have["images"][0]["repoTags"].remove("quay.io/calico/typha:v3.32.1")
    out = io.StringIO()
    rc = nc.run(EXPECTED, FakeSystem(root, commands(over | {images_key: (0, json.dumps(have))})), out)
    assert rc == 1 and "quay.io/calico/typha:v3.32.1" in out.getvalue()


def test_every_fact_the_check_verifies_comes_from_its_expectations(tmp_path):
    """The node check spells no node fact of its own: kernel modules, sysctls, ports, the CRI
    socket and where the expectations are all come from node-check.json (bakery/nodefacts.py
    and the plan write it), so the bake and the check cannot drift apart."""
    from bakery import nodefacts

    source = Path(nc.__file__).read_text()
    facts = [*nodefacts.KERNEL_MODULES, *(k for k, _ in nodefacts.SYSCTLS), "containerd.sock", "node-check.json",
             *(str(p) for p in nodefacts.COMPONENT_PORTS), "6443"]
    assert [f for f in facts if f in source.split('"""', 2)[2]] == []
    exp = dict(EXP, kernelModules=["overlay", "br_netfilter", "nf_conntrack"],
               sysctls=dict(EXP["sysctls"], **{"net.ipv4.conf.all.rp_filter": "0"}))
    healthy_tree(tmp_path / "root", EXP)
    (tmp_path / "root/opt/bakery/node-check.json").write_text(json.dumps(exp))
    rc, text = run_check(tmp_path)
    assert "FAIL kernel-modules: not loaded: nf_conntrack" in text
    assert "net.ipv4.conf.all.rp_filter = (missing) (want 0)" in text and rc == 1


def test_pem_bundle_parser_reads_the_system_bundle():
    """update-ca-certificates' bundle as this machine has it: one digest per certificate, the
    same ones openssl computes."""
    import hashlib
    bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    if not bundle.exists():
        pytest.skip("no system CA bundle here")
    text = bundle.read_text()
    digests = nc.parse_pem_bundle(text)
    assert len(digests) == text.count("-----BEGIN CERTIFICATE-----") > 0
    first = text[:text.index("-----END CERTIFICATE-----") + 25]
    der = subprocess.run(["openssl", "x509", "-outform", "DER"], input=first.encode(), capture_output=True,
                         check=True).stdout
    assert hashlib.sha256(der).hexdigest() in digests
    assert nc.parse_pem_bundle(first.replace(first.splitlines()[1], "!!!!")) == set()


# --- the platform (issue 21) ------------------------------------------------------------------

def _elf_head(machine: int | None = None) -> bytes:
    """The first bytes of a real ELF program on this machine, its e_machine replaced if asked."""
    head = bytearray(Path(shutil.which("true") or "/bin/true").read_bytes()[:64])
    if machine is not None:
        head[18:20] = machine.to_bytes(2, "little")
    return bytes(head)


def test_elf_machine_reads_real_binaries():
    from bakery import versions

    assert nc.elf_machine(_elf_head()) == versions.ARCHES["amd64"].elf_machine  # this machine is amd64
    assert nc.elf_machine(b"#!/bin/sh\nexit 0\n" + bytes(8)) is None
    assert nc.elf_machine(_elf_head(183)) == versions.ARCHES["arm64"].elf_machine


@pytest.mark.parametrize("arch,firmware", [("amd64", "bios"), ("amd64", "uefi"), ("arm64", "uefi")])
def test_platform_check_judges_the_architecture_and_the_firmware(tmp_path, arch, firmware):
    from bakery import versions

    a = versions.ARCHES[arch]
    other = versions.ARCHES["arm64" if arch == "amd64" else "amd64"]
    exp = {"platform": {"arch": a.name, "uname": a.uname, "elfMachine": a.elf_machine, "firmware": firmware,
                        "binaries": ["/usr/local/bin/containerd", "/usr/bin/kubelet", "/usr/local/bin/script"]}}
    if firmware == "uefi":
        exp["platform"]["efiBootFile"] = a.efi_removable
    root = tmp_path / "root"

    def put(path, data):
        (root / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (root / path.lstrip("/")).write_bytes(data)

    put("/usr/local/bin/containerd", _elf_head(a.elf_machine))
    put("/usr/bin/kubelet", _elf_head(a.elf_machine))
    put("/usr/local/bin/script", b"#!/bin/sh\n")  # a script runs anywhere
    if firmware == "uefi":
        (root / "sys/firmware/efi").mkdir(parents=True)
        put(a.efi_removable, b"MZ")
    right = {("uname", "-m"): (0, a.uname + "\n"), ("dpkg", "--print-architecture"): (0, a.name + "\n")}

    def verdicts(table):
        return {r.name: r for r in nc.check_platform(FakeSystem(root, table), exp)}

    good = verdicts(right)
    assert {n: r.ok for n, r in good.items()} == {"arch": True, "firmware": True}, [r.line() for r in good.values()]
    assert "2 program(s)" in good["arch"].seen
    # another machine's kernel, or dpkg's, or one program of the other architecture
    assert not verdicts(right | {("uname", "-m"): (0, other.uname + "\n")})["arch"].ok
    assert not verdicts(right | {("dpkg", "--print-architecture"): (0, other.name + "\n")})["arch"].ok
    put("/usr/bin/kubelet", _elf_head(other.elf_machine))
    bad = verdicts(right)["arch"]
    assert not bad.ok and f"/usr/bin/kubelet is for ELF machine {other.elf_machine}" in bad.seen
    put("/usr/bin/kubelet", _elf_head(a.elf_machine))
    # the firmware: booted the other way, or (UEFI) no removable-path loader
    if firmware == "uefi":
        (root / a.efi_removable.lstrip("/")).unlink()
        assert not verdicts(right)["firmware"].ok
        put(a.efi_removable, b"MZ")
        (root / "sys/firmware/efi").rmdir()
        assert not verdicts(right)["firmware"].ok
    else:
        (root / "sys/firmware/efi").mkdir(parents=True)
        assert not verdicts(right)["firmware"].ok
