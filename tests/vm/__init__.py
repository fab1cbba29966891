"""Boot-test infrastructure: real VMs under qemu, booted with bakery's NoCloud seeds.

Everything in the VM is real Debian 12 (kernel, systemd, cloud-init 22.4.2, containerd,
ifupdown network configuration, the NoCloud datasource) EXCEPT kubeadm, kubelet, kubectl
and crictl: those cannot be installed offline, so the test image carries small STAND-IN
shell scripts under those names. A stand-in records its argv and a copy of every file it
was pointed at (`--config F`, `-f F`) under /var/lib/standin/ and exits 0. No Kubernetes
runs in these VMs; the tests prove what the first boot *asked* kubeadm and kubectl to do.

Modules:
- image: builds (and caches outside the repository) the small Debian test disk.
- seed:  writes a NoCloud seed ISO (volume id CIDATA) with pycdlib.
- qemu:  starts a VM (KVM if it really works, else TCG) under a timeout, two NICs like
         VirtualBox (enp0s3 user-mode NAT with restrict=on, enp0s8 isolated), and
         always kills it by its own pid.
- disk:  reads a VM's disk offline after it powered off (qemu-img convert + debugfs).
"""
from __future__ import annotations

import shutil

REQUIRED_TOOLS = ("qemu-system-x86_64", "qemu-img", "debootstrap", "debugfs", "mkfs.ext4")


def tool(name: str) -> str:
    """The path of a host tool, looking in sbin too (debootstrap, debugfs, mkfs.ext4, chroot
    live there and a non-login PATH may lack it); the bare name when it is nowhere."""
    import os

    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    return shutil.which(name, path=path) or name


def missing_tools() -> list[str]:
    """The host tools the VM tests need that are not installed."""
    return [t for t in REQUIRED_TOOLS if shutil.which(tool(t)) is None]
