"""VirtualBox: packer-plugin-virtualbox's virtualbox-iso builder; the build makes an OVA that
virtualbox/create-vms.sh imports once per node."""
from __future__ import annotations

from ..templating import hcl_string

BUILDER = "virtualbox-iso"
PLUGIN = "virtualbox"
PLUGIN_SOURCE = "github.com/hashicorp/virtualbox"
PLUGIN_VERSION = "1.1.5"
NOTES = "VirtualBox on this machine; makes an OVA"

# Linux keeps the hardware clock in UTC; packer-plugin-virtualbox defaults rtc_time_base to
# "local" (`--rtcuseutc off`), which starts every guest off by the host's UTC offset. Its
# allowed values are exactly "UTC" and "local" (v1.1.5 builder/virtualbox/iso/builder.go;
# step_create_vm.go turns "UTC" into `modifyvm --rtcuseutc on`).
RTC_TIME_BASE = "UTC"


def ova_name(plan) -> str:
    """The OVA of the virtualbox-iso build, relative to the images folder (sources.pkr.hcl:
    output_directory ${var.output_dir}/virtualbox-iso, vm_name = image_name, format ova)."""
    return f"{BUILDER}/{plan.image_name}.ova"


# The firmware of the VM, by spec.image.firmware: the plugin takes exactly "bios" (its default)
# or "efi" (v1.1.5 builder/virtualbox/iso/builder.go: "firmware can only be bios or efi";
# step_create_vm.go runs `modifyvm --firmware <value>`).
FIRMWARE = {"bios": "bios", "uefi": "efi"}


def source_attributes(arch: str, firmware: str) -> list[tuple[str, str]]:
    """The virtualbox-iso source's firmware attribute (name, HCL expression); amd64 only
    (spec check arch-builder)."""
    assert arch == "amd64", "validation refuses arm64 on VirtualBox"
    return [("firmware", hcl_string(FIRMWARE[firmware]))]
