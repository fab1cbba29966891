"""Debian's installer, booted the way the netinst ISO boots it, for the Debian CD seed test.

What runs is Debian 12's own installer: rootskel's init and udev, env2debconf,
preseed-common's preseed_command and debconf-set-selections, util-linux's blkid, busybox's
mount, from the initrd of the ``debian-installer-12-netboot-amd64`` package (.ci/run installs
it; Debian's netboot and netinst images are built from the same source at the same version).
The netinst ISO's initrd differs by its flavour's packages: the CD flavour carries the drivers
of CD drives and of ISO 9660 (debian-installer build/pkg-lists/cdrom/common, cdrom/amd64.cfg
and cdrom/isolinux/amd64.cfg: cdrom-core, isofs, sata, pata and scsi modules), which the
netboot flavour loads later from the network. So the test appends those drivers, taken from
the test disk's Debian kernel (which the VM boots), to the netboot initrd as a second cpio
archive, as the kernel allows (Documentation/driver-api/early-userspace/buffer-format.rst).

It appends one more file: a probe that runs right after the installer's early command
(lib/debian-installer-startup.d/S34, after S33preseed_early_command), prints what debconf
holds for the questions it is given, what the installer would pass to the installed
system's kernel command line (user-params), whether the firmware was UEFI (/sys/firmware/efi)
and the kernel command line, on the first serial port (also when no console= was typed, as
under GRUB in tests/test_vm_debian_uefi.py), then powers off. The probe reads; it changes
nothing the installer did.

The kernel command line is built as isolinux builds it from the ISO's menu: the menu entry's
append line (the netboot package's boot-screens/txt.cfg, the same template as the ISO's), then
what was typed after the label.
"""
from __future__ import annotations

import gzip
import io
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import tool
from .qemu import VM, accel_args

NETBOOT = Path("/usr/lib/debian-installer/images/12/amd64/text/debian-installer/amd64")
PACKAGE = "debian-installer-12-netboot-amd64"
# What the CD flavour's initrd has and the netboot one lacks (see the module docstring).
CD_DRIVERS = ("kernel/drivers/ata", "kernel/drivers/cdrom", "kernel/fs/isofs",
              "kernel/drivers/scsi/sr_mod.ko", "kernel/drivers/scsi/sd_mod.ko",
              "kernel/drivers/scsi/scsi_mod.ko", "kernel/drivers/scsi/scsi_common.ko")
PROBE_MARK = "BAKERY-PROBE"
PROBE = r"""#!/bin/sh
# Test probe (bakery tests/vm/installer.py): what the early command left in debconf.
# the first serial port, also when the kernel's console is elsewhere (no console= typed)
out=/dev/console
[ -c /dev/ttyS0 ] && out=/dev/ttyS0
{
echo "@MARK@-BEGIN"
while read -r q; do
  printf '@MARK@ %s=%s\n' "$q" "$(debconf-get "$q")"
done < /bakery-probe-questions
printf '@MARK@-USER-PARAMS %s\n' "$(user-params | tr '\n' ' ')"
printf '@MARK@-MOUNTS %s\n' "$(grep -c ' /media ' /proc/mounts)"
if [ -d /sys/firmware/efi ]; then echo "@MARK@-FIRMWARE uefi"; else echo "@MARK@-FIRMWARE bios"; fi
printf '@MARK@-CMDLINE %s\n' "$(cat /proc/cmdline)"
echo "@MARK@-END"
} > "$out" 2>&1
poweroff -f
""".replace("@MARK@", PROBE_MARK)
FAILED_COMMAND = "Failed to run preseeded command"  # preseed-common.templates, preseed/command_failed


def missing() -> str | None:
    if not (NETBOOT / "initrd.gz").exists():
        return f"Debian's installer is not installed ({PACKAGE}; .ci/run installs it)"
    if shutil.which(tool("depmod")) is None:
        return "depmod is missing (kmod; .ci/run installs it)"
    return None


def menu_append(label: str) -> str:
    """The append line of the ISO menu's entry `label` (boot-screens/txt.cfg)."""
    entry = None
    for line in (NETBOOT / "boot-screens" / "txt.cfg").read_text().splitlines():
        words = line.split(None, 1)
        if words and words[0] == "label":
            entry = words[1].strip() if len(words) > 1 else ""
        elif words and words[0] == "append" and entry == label:
            return words[1].strip()
    raise AssertionError(f"Debian's boot menu has no entry {label!r}")


def _newc_entries(data: bytes):
    """(name, mode, body) of each member of concatenated newc cpio archives."""
    off = 0
    while off + 110 <= len(data):
        head = data[off:off + 110]
        if head[:6] not in (b"070701", b"070702"):
            if data[off:off + 1] == b"\0":  # padding between archives
                off += 1
                continue
            raise AssertionError(f"not a newc cpio archive at {off}")
        fields = [int(head[6 + 8 * i:14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = fields[1], fields[6], fields[11]
        name = data[off + 110:off + 110 + namesize - 1].decode()
        start = (off + 110 + namesize + 3) & ~3
        off = (start + size + 3) & ~3
        if name != "TRAILER!!!":
            yield name, mode, data[start:start + size]


def _newc(entries: list[tuple[str, int, bytes]]) -> bytes:
    out = io.BytesIO()
    for ino, (name, mode, body) in enumerate([*entries, ("TRAILER!!!", 0, b"")], start=1):
        raw = name.encode() + b"\0"
        fields = (ino, mode, 0, 0, 1, 0, len(body), 0, 0, 0, 0, len(raw), 0)
        out.write(b"070701" + b"".join(b"%08X" % f for f in fields) + raw)
        out.write(b"\0" * (-out.tell() % 4))
        out.write(body)
        out.write(b"\0" * (-out.tell() % 4))
    return out.getvalue()


def installer_initrd(rootfs: Path, questions: list[str], dest: Path) -> Path:
    """The netboot initrd plus the CD flavour's drivers for the test disk's kernel and the probe."""
    (abi,) = [d.name for d in (rootfs / "lib/modules").iterdir()]
    original = (NETBOOT / "initrd.gz").read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp)
        mods = tree / "lib/modules" / abi
        # the installer's own modules for this kernel, if it has any: depmod indexes them all
        prefix = f"lib/modules/{abi}/"
        for name, mode, body in _newc_entries(gzip.decompress(original)):
            if name.startswith(prefix) and mode & 0o170000 == 0o100000:
                path = tree / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(body)
        added = []
        for rel in CD_DRIVERS:
            src = rootfs / "lib/modules" / abi / rel
            for f in ([src] if src.is_file() else sorted(src.rglob("*.ko*"))):
                target = mods / f.relative_to(rootfs / "lib/modules" / abi)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f, target)
                added.append(target)
        for name in ("modules.order", "modules.builtin", "modules.builtin.modinfo"):
            if (rootfs / "lib/modules" / abi / name).exists():
                shutil.copyfile(rootfs / "lib/modules" / abi / name, mods / name)
        subprocess.run([tool("depmod"), "-b", str(tree), abi], check=True, capture_output=True, timeout=120)
        entries: list[tuple[str, int, bytes]] = []
        for path in sorted(tree.rglob("*")):
            rel = str(path.relative_to(tree))
            if path.is_dir():
                entries.append((rel, 0o40755, b""))
            elif path in added or path.parent == mods:
                entries.append((rel, 0o100644, path.read_bytes()))
    entries.append(("lib/debian-installer-startup.d/S34bakery-probe", 0o100755, PROBE.encode()))
    entries.append(("bakery-probe-questions", 0o100644, "".join(q + "\n" for q in questions).encode()))
    dest.write_bytes(original + gzip.compress(_newc(entries), compresslevel=1))
    return dest


@dataclass
class InstallerVM(VM):
    """The installer on the test disk's kernel, with CDs and no disk: `cds` in drive order."""

    cmdline: str = ""
    initrd: Path | None = None
    cds: tuple[Path, ...] = ()
    machine: str = "pc"

    def prepare(self) -> None:
        pass

    def boot_args(self) -> list[str]:
        """How the installer starts: here the kernel and initrd given to qemu, as isolinux
        would load them."""
        assert self.initrd is not None
        return ["-kernel", str(self.image.kernel), "-initrd", str(self.initrd), "-append", self.cmdline]

    def command(self) -> list[str]:
        cds = [a for i, cd in enumerate(self.cds)
               for a in ("-drive", f"file={cd},media=cdrom,if=ide,index={i},readonly=on")]
        return ["qemu-system-x86_64", "-name", self.name, "-nodefaults", "-no-user-config",
                "-display", "none", "-machine", self.machine, *accel_args(self.image, self.workdir),
                "-smp", str(self.cpus), "-m", str(self.memory_mib), "-no-reboot", *self.boot_args(), *cds,
                "-chardev", f"file,id=ser0,path={self.serial_log}", "-serial", "chardev:ser0",
                "-monitor", f"unix:{self.monitor},server=on,wait=off"]

    def probe(self) -> dict[str, str]:
        """What the probe printed: question -> value, plus USER-PARAMS and MOUNTS."""
        text = self.serial_text().replace("\r", "")
        begin, end = text.find(f"{PROBE_MARK}-BEGIN"), text.find(f"{PROBE_MARK}-END")
        assert 0 <= begin < end, f"the probe did not run:\n{self.serial_tail()}"
        out = {}
        for line in text[begin:end].splitlines()[1:]:
            if line.startswith(f"{PROBE_MARK} "):
                q, _, v = line.removeprefix(f"{PROBE_MARK} ").partition("=")
                out[q] = v
            elif line.startswith(f"{PROBE_MARK}-"):
                key, _, v = line.removeprefix(f"{PROBE_MARK}-").partition(" ")
                out[key] = v.strip()
        return out
