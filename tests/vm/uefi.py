"""A UEFI machine booting a CD that looks like Debian's netinst ISO to the firmware and to GRUB,
for tests/test_vm_debian_uefi.py.

The firmware is OVMF (Debian's ``ovmf`` package: the 4 MiB build without Secure Boot, its
variable store copied per VM), on qemu's ``pc`` machine with the emulated PS/2 keyboard, which
is where Packer's key presses land too (VNC key events on qemu, the hypervisor's keyboard on
VirtualBox and Proxmox).

The CD (``netinst_cd``) reproduces what bakery's UEFI boot command relies on:
- an El Torito EFI boot image holding GRUB for x86_64-efi, found by the firmware's removable
  media path (grub-mkrescue from Debian's grub-efi-amd64-bin writes it; debian-cd writes
  efi.img with Debian's signed shim and GRUB of the same GRUB version, 2.06);
- GRUB's menu from Debian 12's own installer menu (the ``grub/grub.cfg`` of the
  debian-installer-12-netboot-amd64 package, made by debian-installer's grub-gencfg; the ISO's
  is made by debian-cd tools/boot/bookworm/boot-x86 from the isolinux menu, with the same
  text-installer entries and the graphical installer's besides, and its theme), with its
  kernel and initrd paths moved to where the ISO has them:
  ``/install.amd/vmlinuz`` and ``/install.amd/initrd.gz`` (boot-x86 INSTALLDIR_amd64). It has
  no ``timeout``, so the menu waits for a key, as on the ISO;
- ``/.disk/info`` as on an installation CD.

What it does not reproduce: the ISO's signed shim (Secure Boot is off here, as on Packer's
default machines), the theme and splash pictures (without a video device GRUB's gfxterm and
background image fail quietly and it draws its menu on the firmware's text console, which
OVMF mirrors to the serial port), the graphical installer's kernel (/install.amd/gtk), the
hybrid MBR and isolinux (BIOS boot), and the installer's packages (pool/): the installer under
test stops before it would look for them. The kernel is the test disk's (Debian 12's
linux-image-amd64, an EFI stub kernel like the installer's own) and the initrd is
tests/vm/installer.py's (Debian 12's installer, the CD flavour's drivers and the probe).
"""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import tool
from .installer import NETBOOT, InstallerVM

OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
GRUB_EFI_MODULES = Path("/usr/lib/grub/x86_64-efi")
INSTALL_DIR = "install.amd"  # debian-cd tools/boot/bookworm/boot-x86: INSTALLDIR_amd64
VOLID = "Debian 12 amd64 n"  # debian-cd: "Debian <version> <arch> n" for netinst
DISK_INFO = 'Debian GNU/Linux 12 "Bookworm" - Official amd64 NETINST\n'


def missing() -> str | None:
    """Why the UEFI boot cannot run here, or None."""
    needs = [(OVMF_CODE.exists() and OVMF_VARS.exists(), "ovmf"),
             (GRUB_EFI_MODULES.is_dir(), "grub-efi-amd64-bin"),
             (shutil.which("grub-mkrescue") is not None, "grub-common"),
             (shutil.which("mformat") is not None, "mtools"),
             (shutil.which("xorriso") is not None, "xorriso"),
             ((NETBOOT / "grub" / "grub.cfg").exists(), "debian-installer-12-netboot-amd64")]
    lacking = [pkg for ok, pkg in needs if not ok]
    if lacking:
        return f"the UEFI boot test needs {', '.join(lacking)} (.ci/run installs them)"
    return None


def debian_grub_cfg() -> str:
    """Debian 12's installer menu for GRUB, with the ISO's paths for kernel and initrd."""
    text = (NETBOOT / "grub" / "grub.cfg").read_text()
    assert not re.search(r"^\s*set\s+timeout", text, re.M), "Debian's menu has no timeout"
    moved = (text.replace("/debian-installer/amd64/linux", f"/{INSTALL_DIR}/vmlinuz")
                 .replace("/debian-installer/amd64/initrd.gz", f"/{INSTALL_DIR}/initrd.gz"))
    assert "/debian-installer/" not in moved, "a path of the netboot layout is left"
    return moved


def netinst_cd(kernel: Path, initrd: Path, dest: Path) -> Path:
    """A CD the firmware boots into GRUB and Debian's menu (see the module docstring)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / INSTALL_DIR).mkdir()
        shutil.copyfile(kernel, root / INSTALL_DIR / "vmlinuz")
        shutil.copyfile(initrd, root / INSTALL_DIR / "initrd.gz")
        (root / ".disk").mkdir()
        (root / ".disk" / "info").write_text(DISK_INFO)
        (root / "boot" / "grub").mkdir(parents=True)
        (root / "boot" / "grub" / "grub.cfg").write_text(debian_grub_cfg())
        r = subprocess.run([tool("grub-mkrescue"), "-d", str(GRUB_EFI_MODULES), "-o", str(dest), str(root),
                            "--", "-volid", VOLID],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, f"grub-mkrescue failed:\n{r.stderr}"
    return dest


@dataclass
class UefiInstallerVM(InstallerVM):
    """OVMF boots `cds` (the first the netinst-like CD); no -kernel: GRUB loads what is typed.
    A QMP socket beside the HMP monitor lets the test type on the emulated keyboard."""

    @property
    def qmp_path(self) -> Path:
        return self.monitor.with_name("qmp.sock")

    @property
    def vars_copy(self) -> Path:
        return self.workdir / f"{self.name}.OVMF_VARS.fd"

    def prepare(self) -> None:
        shutil.copyfile(OVMF_VARS, self.vars_copy)

    def boot_args(self) -> list[str]:
        """OVMF from pflash, with its own copy of the variables, and no kernel: GRUB loads what
        is typed, over the QMP socket."""
        return ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
                "-drive", f"if=pflash,format=raw,unit=1,file={self.vars_copy}",
                "-qmp", f"unix:{self.qmp_path},server=on,wait=off"]
