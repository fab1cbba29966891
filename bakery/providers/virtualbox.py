"""VirtualBox: packer-plugin-virtualbox's virtualbox-iso builder; the build makes an OVA that
virtualbox/create-vms.sh imports once per node."""

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
