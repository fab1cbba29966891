"""Debian under UEFI (issue 21): the seeds and the firmware agree. OVMF boots a CD that looks
like Debian's netinst ISO to the firmware and to GRUB (tests/vm/uefi.py says what it
reproduces and what not), the test types bakery's rendered boot command on the emulated
keyboard as Packer does (tests/vm/bootcommand.py), and Debian 12's real installer
(tests/vm/installer.py) starts from the kernel command line GRUB built from it, finds the seed
CD and has every answer of the rendered preseed in debconf before its first question.

The control: the same command with the early command double-quoted, as at isolinux's prompt
under BIOS, never reaches the kernel: GRUB's lexer refuses it (its `$(` is no GRUB syntax).
"""
from __future__ import annotations

import re
import time

import pytest
from test_installer_seed import packer_cd
from test_packer import FAKE_HASH, local_values, variant_text
from test_vm_debian_seed import preseed_answers

from bakery.image.installer import DEBIAN_CD_LOADER

from hclspec import check_packer_dir, value
from vm import installer, uefi
from vm.bootcommand import QMP, type_command
from vm.fixtures import say, vm_image  # noqa: F401  (fixture)
from vm.image import rootfs
from vm.qemu import accel_name

pytestmark = pytest.mark.vm

MENU = r"Advanced options \.\.\."  # GRUB drew Debian's menu and waits for a key
HOLD_MS, GAP_S = 20, 0.02  # per key; Packer's qemu builder waits 100 ms (boot_key_interval)


def boot_command(renders, os: str, extra: str = "") -> list[str]:
    pdir = renders.text(variant_text(os=os, image_extra=extra)) / "packer"
    return value(local_values(check_packer_dir(pdir)[0])["boot_command"])


@pytest.fixture(scope="module")
def debian_uefi(renders, vm_image, tmp_path_factory):
    reason = installer.missing() or uefi.missing()
    if reason:
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("debian-uefi")
    # Debian 12 under UEFI: the installer here is Debian 12's (debian-13's default firmware is
    # uefi, and its boot command is the same, which test_the_debian_13_command_is_the_same checks)
    pdir = renders.text(variant_text(os="debian-12", image_extra="\n    firmware: uefi")) / "packer"
    boot = value(local_values(check_packer_dir(pdir)[0])["boot_command"])
    seed = packer_cd(pdir, tmp)
    answers = preseed_answers((tmp / "cd" / "preseed").read_text())
    initrd = installer.installer_initrd(rootfs(), sorted(answers), tmp / "initrd.gz")
    netinst = uefi.netinst_cd(vm_image.kernel, initrd, tmp / "netinst.iso")
    return dict(boot=boot, answers=answers, seed=seed, initrd=initrd, netinst=netinst, tmp=tmp)


def start(vm_image, d, name: str) -> uefi.UefiInstallerVM:
    return uefi.UefiInstallerVM(name=name, image=vm_image, seed_iso=d["seed"], workdir=d["tmp"] / "vms",
                                initrd=d["initrd"], cds=(d["netinst"], d["seed"]), memory_mib=1024, timeout=360)


def type_at_menu(vm, boot: list[str]) -> tuple[float, float]:
    """Packer's boot_wait, then its typing: wait until GRUB shows the menu (it has no timeout,
    so it waits too), then type. (seconds to the menu, seconds typing)"""
    vm.wait_for_serial(MENU, timeout=180)
    menu = time.monotonic() - vm.started
    with QMP(vm.qmp_path) as qmp:
        typing = type_command(qmp, boot, hold_ms=HOLD_MS, gap_s=GAP_S)
    return menu, typing


def test_the_debian_13_command_is_the_same(renders):
    """debian-13 defaults to uefi; what this module boots (debian-12 with firmware: uefi) is
    the command a debian-13 build types too."""
    assert boot_command(renders, "debian-13") == boot_command(renders, "debian-12", "\n    firmware: uefi")


def test_grub_under_ovmf_boots_the_installer_with_the_cd_seed(vm_image, debian_uefi, capsys):
    d = debian_uefi
    boot = d["boot"]
    assert boot[0] == "c<wait>", boot  # GRUB's command line, from its menu
    with start(vm_image, d, "d-i-uefi") as vm:
        menu, typing = type_at_menu(vm, boot)
        vm.wait()
        say(capsys, f"debian-installer under OVMF: GRUB's menu after {menu:.0f}s, typed in {typing:.0f}s, "
                    f"powered off after {vm.elapsed:.0f}s under {accel_name()}")
        got = vm.probe()
        serial = vm.serial_text()
    # the firmware was UEFI (the kernel saw EFI runtime: /sys/firmware/efi) and GRUB ran the
    # typed commands without a complaint
    assert got["FIRMWARE"] == "uefi"
    # (from the command line on: without a video device, Debian's menu setup complains of its
    # graphics mode, and so does `boot` with the menu's gfxpayload=keep)
    typed = serial[serial.find("grub>"):serial.find(f"{installer.PROBE_MARK}-BEGIN")]
    assert "grub>" in typed
    errors = set(re.findall(r"error: [^\r\n]*", typed)) - {"error: no suitable video mode found."}
    assert not errors, typed[-3000:]
    # what GRUB made of the single-quoted word: the loader intact, requoted whole for the
    # kernel (grub_create_loader_cmdline), the installer's parameters before `---`
    assert got["CMDLINE"] == (f'BOOT_IMAGE=/{uefi.INSTALL_DIR}/vmlinuz priority=critical '
                              f'"preseed/early_command={DEBIAN_CD_LOADER}" --- quiet'), got["CMDLINE"]
    answers = d["answers"]
    wrong = {q: (v, got.get(q)) for q, v in answers.items() if got.get(q) != v}
    assert not wrong, f"debconf differs from the preseed (question: (preseed, debconf)): {wrong}"
    assert got["passwd/username"] == "packer" and got["passwd/user-password-crypted"] == FAKE_HASH
    # the UEFI answers: an EFI system partition on GPT, GRUB also at the removable media path
    assert "method{ efi }" in got["partman-auto/expert_recipe"]
    assert "mountpoint{ / }" in got["partman-auto/expert_recipe"]
    assert got["partman-partitioning/choose_label"] == "gpt"
    assert got["grub-installer/force-efi-extra-removable"] == "true"
    # the seed CD unmounted again; nothing typed but `quiet` reaches the installed system
    assert got["MOUNTS"] == "0"
    assert got["USER-PARAMS"] == "quiet", got["USER-PARAMS"]


def test_the_isolinux_quoting_fails_at_grub(vm_image, debian_uefi, capsys):
    """The control: the early command double-quoted, as typed at isolinux's prompt. GRUB's
    lexer refuses the line, no kernel is loaded, and the installer never starts."""
    d = debian_uefi
    boot = [part.replace("'", '"') for part in d["boot"]]
    assert boot != d["boot"]
    with start(vm_image, d, "d-i-uefi-dq") as vm:
        type_at_menu(vm, boot)
        # once for `initrd`, once for `boot`
        vm.wait_for_serial(r"(you need to load the kernel first[\s\S]*){2}", timeout=60)
        say(capsys, f"GRUB refused the double-quoted command after {time.monotonic() - vm.started:.0f}s")
        serial = vm.serial_text()
    assert "error: syntax error" in serial
    assert f"{installer.PROBE_MARK}-BEGIN" not in serial
