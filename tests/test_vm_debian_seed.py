"""Debian's preseed from the seed CD (issue 19): Debian 12's own installer boots with the kernel
command line bakery's boot command types at the ISO's prompt, finds the CD Packer builds from
cd_content, and has every answer of the rendered preseed in debconf before its first question.

The installer is real (tests/vm/installer.py says what is added to it: the CD flavour's drivers
and a read-only probe); the CD is built as Packer builds it (xorriso, templatefile()).
"""
from __future__ import annotations

import subprocess
import time

import pytest
from test_installer_seed import debian_cd_cmdline, packer_cd, packer_of
from test_packer import FAKE_HASH

from conftest import need
from vm import installer
from vm.fixtures import say, vm_image  # noqa: F401  (fixture)
from vm.image import rootfs
from vm.qemu import accel_name

pytestmark = pytest.mark.vm


def preseed_answers(text: str) -> dict[str, str]:
    """question -> value, as debconf-set-selections reads a preseed (no continuation lines here)."""
    out = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            assert not line.endswith("\\"), line
            _owner, question, _type, *rest = line.split(None, 3)
            out[question] = rest[0].strip() if rest else ""
    return out


@pytest.fixture(scope="module")
def debian_seed(renders, vm_image, tmp_path_factory):
    reason = installer.missing()
    if reason:
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("debian-seed")
    pdir = packer_of(renders, "debian-12")
    seed = packer_cd(pdir, tmp)
    answers = preseed_answers((tmp / "cd" / "preseed").read_text())
    label, params = debian_cd_cmdline(pdir)
    # as isolinux builds it: the entry's append line, then what was typed after its label
    cmdline = f"console=ttyS0 {installer.menu_append(label)} {params}"
    initrd = installer.installer_initrd(rootfs(), sorted(answers), tmp / "initrd.gz")
    # an installation CD (its .disk/info is how the installer knows one) for the drive order
    install_cd = tmp / "install.iso"
    (tmp / "install" / ".disk").mkdir(parents=True)
    (tmp / "install" / ".disk" / "info").write_text("Debian GNU/Linux 12 \"Bookworm\" - Official amd64 NETINST\n")
    subprocess.run([need("xorriso"), "-as", "genisoimage", "-rock", "-joliet", "-volid", "Debian 12 amd64 n",
                    "-output", str(install_cd), str(tmp / "install")], check=True, capture_output=True, timeout=120)
    return dict(answers=answers, cmdline=cmdline, initrd=initrd, seed=seed, install_cd=install_cd, tmp=tmp)


def boot(vm_image, d, name, cds, machine="pc", **kw):
    return installer.InstallerVM(name=name, image=vm_image, seed_iso=d["seed"], workdir=d["tmp"] / "vms",
                                 cmdline=d["cmdline"], initrd=d["initrd"], cds=cds, machine=machine,
                                 memory_mib=1024, timeout=300, **kw)


@pytest.mark.parametrize("machine,order", [("pc", "install-first"), ("q35", "seed-first")])
def test_debian_installer_loads_the_preseed_from_the_seed_cd(vm_image, debian_seed, machine, order, capsys):
    """pc: PIIX IDE, as VirtualBox's and qemu's default CD drives; q35: AHCI, as Proxmox's ide
    drives on a q35 machine. The seed CD is found whatever the drive order."""
    d = debian_seed
    cds = (d["install_cd"], d["seed"]) if order == "install-first" else (d["seed"], d["install_cd"])
    with boot(vm_image, d, f"d-i-{machine}", cds, machine=machine) as vm:
        vm.wait()
        say(capsys, f"debian-installer ({machine}, {order}): {vm.elapsed:.0f}s under {accel_name()}")
        got = vm.probe()
    answers = d["answers"]
    wrong = {q: (v, got.get(q)) for q, v in answers.items() if got.get(q) != v}
    assert not wrong, f"debconf differs from the preseed (question: (preseed, debconf)): {wrong}"
    # the values that make the build: its user, the password hash, the disk layout
    assert got["passwd/username"] == "packer" and got["passwd/user-password-crypted"] == FAKE_HASH
    assert "mountpoint{ / }" in got["partman-auto/expert_recipe"]
    # the seed CD is unmounted again (cdrom-detect looks for the installation CD later), and
    # nothing bakery typed reaches the installed system's kernel command line
    assert got["MOUNTS"] == "0"
    assert got["USER-PARAMS"] == "quiet", got["USER-PARAMS"]
    # no word of the command line taken for a module parameter (S02module-params)
    assert "register-module" not in vm.serial_text()


def test_without_the_seed_cd_the_installer_stops_at_its_error(vm_image, debian_seed, capsys):
    """The control: no seed CD, no answers. The early command fails after its retries and the
    installer shows its error instead of installing with defaults (and the probe never runs)."""
    d = debian_seed
    with boot(vm_image, d, "d-i-no-seed", (d["install_cd"],)) as vm:
        vm.wait_for_serial(installer.FAILED_COMMAND, timeout=240)
        say(capsys, f"debian-installer without a seed stopped at its error after "
                    f"{time.monotonic() - vm.started:.0f}s under {accel_name()}")
        assert f"{installer.PROBE_MARK}-BEGIN" not in vm.serial_text()
