"""QEMU: packer-plugin-qemu's qemu builder makes a qcow2 disk image."""
from __future__ import annotations

from ..templating import hcl_string

BUILDER = "qemu"
PLUGIN = "qemu"
PLUGIN_SOURCE = "github.com/hashicorp/qemu"
PLUGIN_VERSION = "1.1.4"
NOTES = "QEMU (with /dev/kvm, or qemu_accelerator=tcg); makes a qcow2"

# UEFI firmware files on the Packer host, by architecture (Debian's and Ubuntu's packages):
# - amd64, ovmf: the 4 MB non-Secure-Boot build, OVMF_CODE_4M.fd with its empty variable store
#   OVMF_VARS_4M.fd (Debian 12 ovmf 2022.11-6+deb12u2, 13 2025.02-8+deb13u1; Ubuntu 24.04).
#   The plugin's defaults, the 2 MB OVMF_CODE.fd/OVMF_VARS.fd (v1.1.4 builder/qemu/config.go
#   loadDefaults), are gone from Debian 13 and Ubuntu 24.04 (edk2 2023.11-2 NEWS.Debian: "The
#   2MB ovmf pflash images ... have now been removed"), so both are always given. The non-
#   Secure-Boot build needs no q35 or SMM (ovmf's 60-edk2-x86_64.json lists pc-i440fx-*).
# - arm64, qemu-efi-aarch64: AAVMF_CODE.fd and AAVMF_VARS.fd, 64 MiB pflash images
#   (60-edk2-aarch64.json: machines virt-*).
# They are Packer variables: another host keeps them elsewhere (the README says where).
EFI_FIRMWARE = {"amd64": ("/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"),
                "arm64": ("/usr/share/AAVMF/AAVMF_CODE.fd", "/usr/share/AAVMF/AAVMF_VARS.fd")}
# arm64 runs in qemu-system-aarch64 on the virt board (the plugin's defaults are
# qemu-system-x86_64 and pc). virt's default CPU under TCG is the 32-bit cortex-a15
# (hw/arm/virt.c virt_machine_class_init), so the CPU is named: `max`, the host's CPU under
# KVM and every feature under TCG.
ARM64 = {"qemu_binary": "qemu-system-aarch64", "machine_type": "virt", "cpu_model": "max"}


def arm64_qemuargs(cd_content: bool) -> list[list[str]]:
    """virt has no keyboard and no display, and Packer types the boot command as VNC key
    events: a USB keyboard (qemu-xhci, usb-kbd) and virtio-gpu, as kubernetes-sigs/image-builder
    packer/maas/packer-arm64.json.tmpl adds them. A `-device` in qemuargs replaces every device
    the plugin would add but its NIC (v1.1.4 builder/qemu/step_run.go applyUserOverrides,
    "#6804"), so the CD drives are given here as the plugin makes them with
    cdrom_interface = "virtio-scsi" (getDeviceAndDriveArgs): one virtio-scsi-pci controller
    and a scsi-cd per CD, drive cdrom<i> in order, the ISO then the cd_content CD. virtio-scsi,
    not the virt board's default interface (virtio-blk), because the installers look for a CD
    drive (debian-installer's cdrom-detect, list-devices cd)."""
    cds = ["cdrom0", "cdrom1"] if cd_content else ["cdrom0"]
    return ([["-device", "virtio-scsi-pci,id=scsi0"]]
            + [["-device", f"scsi-cd,bus=scsi0.0,drive={d}"] for d in cds]
            + [["-device", "qemu-xhci"], ["-device", "usb-kbd"], ["-device", "virtio-gpu-pci"]])


def source_attributes(arch: str, firmware: str, cd_content: bool) -> list[tuple[str, str]]:
    """The qemu source's firmware and architecture attributes (name, HCL expression)."""
    attrs: list[tuple[str, str]] = []
    if arch == "arm64":
        attrs += [(k, hcl_string(v)) for k, v in ARM64.items()]
        attrs.append(("cdrom_interface", hcl_string("virtio-scsi")))
        args = ", ".join("[" + ", ".join(map(hcl_string, pair)) + "]" for pair in arm64_qemuargs(cd_content))
        attrs.append(("qemuargs", f"[{args}]"))
    if firmware == "uefi":
        attrs += [("efi_boot", hcl_string(True)), ("efi_firmware_code", "var.qemu_efi_firmware_code"),
                  ("efi_firmware_vars", "var.qemu_efi_firmware_vars")]
    return attrs
