"""Start test VMs under qemu: KVM when it really boots a kernel, TCG otherwise.

Each VM gets:
- a qcow2 overlay on the cached base image, so the base stays clean;
- the kernel and initrd of the image (``-kernel/-initrd``, ``root=/dev/vda``);
- the NoCloud seed as a read-only CD;
- two NICs like VirtualBox: ``addr=0x3`` (enp0s3) on user-mode NAT with ``restrict=on``
  (no route out: a first boot that downloads anything fails visibly) and ``addr=0x8``
  (enp0s8) on an isolated network: a hub of its own, or a UDP point-to-point link to a
  second VM (``link=``), with the MAC the seed's network-config expects;
- its serial console in a file.

Every qemu runs under a deadline and is killed by its own pid when it overstays; VM is a
context manager and ``kill_all()`` ends every VM this process started (the pytest fixture
calls it), so no qemu outlives the test.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .image import BaseImage

TCG = ("-accel", "tcg,thread=multi", "-cpu", "max,la57=off")
KVM = ("-accel", "kvm", "-cpu", "host")
NAT_MAC = "52:54:00:12:34:56"

_accel: tuple[str, ...] | None = None
_running: dict[int, VM] = {}


class VMTimeout(AssertionError):
    pass


def _die_with_parent() -> None:
    """In the child, before exec: the kernel kills qemu if the test process dies (even by
    SIGKILL), so no VM outlives a crashed or killed test run."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _kvm_boots_kernel(image: BaseImage, workdir: Path, timeout: float = 25.0) -> bool:
    """Does a kernel really run under KVM here? Boot the image's kernel with no root fs: a
    working KVM reaches 'Kernel panic' (VFS: unable to mount root) in seconds and qemu exits
    (-no-reboot, panic=-1). A paravirtual /dev/kvm that cannot run it aborts or stalls."""
    log = workdir / "kvm-probe.log"
    cmd = ["qemu-system-x86_64", "-nodefaults", "-no-user-config", "-display", "none", *KVM,
           "-m", "256", "-no-reboot", "-kernel", str(image.kernel),
           "-append", "console=ttyS0 panic=-1 root=/dev/nonexistent rdinit=/nonexistent",
           "-serial", f"file:{log}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            preexec_fn=_die_with_parent)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return False
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return log.exists() and b"Kernel panic" in log.read_bytes()


def accel_args(image: BaseImage, workdir: Path) -> tuple[str, ...]:
    """KVM if /dev/kvm is usable and boots a kernel, else TCG. BAKERY_VM_ACCEL=tcg|kvm decides."""
    global _accel
    if _accel is not None:
        return _accel
    choice = os.environ.get("BAKERY_VM_ACCEL", "").lower()
    if choice == "tcg":
        _accel = TCG
    elif choice == "kvm" or (os.access("/dev/kvm", os.R_OK | os.W_OK) and _kvm_boots_kernel(image, workdir)):
        _accel = KVM
    else:
        _accel = TCG
    return _accel


def accel_name() -> str:
    return "kvm" if _accel == KVM else "tcg" if _accel == TCG else "unknown"


def free_udp_ports(n: int) -> list[int]:
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


@dataclass(frozen=True)
class Link:
    """One end of a UDP point-to-point L2 link between two VMs' enp0s8 (qemu's dgram netdev)."""

    local_port: int
    remote_port: int

    @staticmethod
    def pair() -> tuple[Link, Link]:
        a, b = free_udp_ports(2)
        return Link(a, b), Link(b, a)

    def netdev(self, ident: str) -> str:
        return (f"dgram,id={ident},local.type=inet,local.host=127.0.0.1,local.port={self.local_port},"
                f"remote.type=inet,remote.host=127.0.0.1,remote.port={self.remote_port}")


@dataclass
class VM:
    name: str
    image: BaseImage
    seed_iso: Path
    workdir: Path
    node_mac: str | None = None  # MAC of enp0s8; None: one made from the name (network-config matches by name)
    link: Link | None = None  # None: enp0s8 alone on its own hub
    memory_mib: int = 1536
    cpus: int = 2
    timeout: float = 600.0
    proc: subprocess.Popen | None = field(default=None, repr=False)
    started: float = 0.0
    elapsed: float = 0.0
    _mon_dir: str | None = field(default=None, repr=False)

    @property
    def mac(self) -> str:
        if self.node_mac:
            return self.node_mac
        h = hashlib.sha256(self.name.encode()).hexdigest()
        return f"52:54:00:{h[0:2]}:{h[2:4]}:{h[4:6]}"

    @property
    def monitor(self) -> Path:
        """The HMP monitor socket (in a short /tmp folder: unix socket paths are limited)."""
        if self._mon_dir is None:
            self._mon_dir = tempfile.mkdtemp(prefix="bvm-")
        return Path(self._mon_dir) / "mon.sock"

    @property
    def overlay(self) -> Path:
        return self.workdir / f"{self.name}.qcow2"

    @property
    def serial_log(self) -> Path:
        return self.workdir / f"{self.name}.serial.log"

    @property
    def qemu_log(self) -> Path:
        return self.workdir / f"{self.name}.qemu.log"

    def command(self) -> list[str]:
        accel = accel_args(self.image, self.workdir)
        node_net = self.link.netdev("n1") if self.link else "hubport,id=n1,hubid=1"
        return [
            "qemu-system-x86_64", "-name", self.name, "-nodefaults", "-no-user-config",
            "-display", "none", "-machine", "q35", *accel, "-smp", str(self.cpus),
            "-m", str(self.memory_mib), "-no-reboot",
            "-kernel", str(self.image.kernel), "-initrd", str(self.image.initrd),
            "-append", "root=/dev/vda rw console=ttyS0 panic=-1",
            "-drive", f"file={self.overlay},if=virtio,format=qcow2",
            "-drive", f"file={self.seed_iso},media=cdrom,readonly=on",
            "-netdev", "user,id=n0,restrict=on",
            "-device", f"virtio-net-pci,netdev=n0,addr=0x3,mac={NAT_MAC}",
            "-netdev", node_net,
            "-device", f"virtio-net-pci,netdev=n1,addr=0x8,mac={self.mac}",
            "-chardev", f"file,id=ser0,path={self.serial_log}", "-serial", "chardev:ser0",
            "-monitor", f"unix:{self.monitor},server=on,wait=off",
        ]

    def prepare(self) -> None:
        """Make what command() refers to: a fresh overlay on the base image."""
        if self.overlay.exists():
            self.overlay.unlink()
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(self.image.raw), "-F", "raw",
                        str(self.overlay)], check=True, capture_output=True, timeout=60)

    def start(self) -> VM:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.prepare()
        cmd = self.command()
        (self.workdir / f"{self.name}.cmd").write_text(" ".join(cmd) + "\n")
        with open(self.qemu_log, "wb") as err:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                         start_new_session=True, preexec_fn=_die_with_parent)
        self.started = time.monotonic()
        _running[self.proc.pid] = self
        return self

    def wait(self) -> int:
        """Wait for the VM to power off; past its deadline kill it and raise VMTimeout."""
        assert self.proc is not None, "start() first"
        left = self.timeout - (time.monotonic() - self.started)
        try:
            rc = self.proc.wait(timeout=max(left, 0.1))
        except subprocess.TimeoutExpired:
            self.kill()
            raise VMTimeout(f"{self.name} did not power off within {self.timeout:.0f}s; "
                            f"serial console:\n{self.serial_tail()}") from None
        finally:
            self.elapsed = time.monotonic() - self.started
            _running.pop(self.proc.pid, None)
        if rc != 0:
            raise AssertionError(f"qemu for {self.name} exited {rc}: {self.qemu_log.read_text()[-2000:]}")
        return rc

    def kill(self) -> None:
        """Kill this VM's qemu by its own pid (never by name) and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        if self.proc is not None:
            _running.pop(self.proc.pid, None)
        if self._mon_dir is not None and (self.proc is None or self.proc.poll() is not None):
            shutil.rmtree(self._mon_dir, ignore_errors=True)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def powerdown(self) -> None:
        """Press the VM's ACPI power button (systemd shuts the guest down cleanly)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(str(self.monitor))
            sock.sendall(b"system_powerdown\n")
            time.sleep(0.5)

    def wait_for_serial(self, pattern: str, timeout: float) -> re.Match:
        """Wait until the serial console shows pattern (a regex); fail if qemu exits or time runs out."""
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while True:
            m = rx.search(self.serial_text())
            if m:
                return m
            if not self.running():
                raise AssertionError(f"{self.name} stopped before its console showed {pattern!r}:\n"
                                     f"{self.serial_tail()}")
            if time.monotonic() > deadline:
                raise VMTimeout(f"{self.name}: no {pattern!r} on the console within {timeout:.0f}s:\n"
                                f"{self.serial_tail()}")
            time.sleep(1)

    def serial_text(self) -> str:
        return self.serial_log.read_text(errors="replace") if self.serial_log.exists() else ""

    def serial_tail(self, lines: int = 60) -> str:
        return "\n".join(self.serial_text().splitlines()[-lines:])

    def __enter__(self) -> VM:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.kill()


def kill_all() -> None:
    for vm in list(_running.values()):
        vm.kill()


def boot_all(vms: list[VM]) -> list[VM]:
    """Start the VMs together and wait for each to power off; kill every one on any failure."""
    try:
        for vm in vms:
            vm.start()
        for vm in vms:
            vm.wait()
    finally:
        for vm in vms:
            vm.kill()
    return vms


def have_qemu() -> bool:
    return shutil.which("qemu-system-x86_64") is not None and shutil.which("qemu-img") is not None
