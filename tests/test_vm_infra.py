"""Smoke test of the VM test infrastructure (tests/vm/) with a tiny hand-written seed.

It proves the machinery the real boot test (test_vm_boot.py) stands on: the Debian test
image boots under qemu (KVM or TCG), Debian's cloud-init 22.4.2 finds a pycdlib-written
NoCloud ISO, applies hostname and a static address on enp0s8 (matched by MAC), the
vendor-data file powers the VM off after the final stage without touching user-data, and
the result is read back offline with qemu-img + debugfs. The image's kubeadm/kubectl/
kubelet/crictl are STAND-INS that only record their calls (see tests/vm/image.py).
"""
from __future__ import annotations

import json
import time

import pytest
import yaml

from vm.disk import Disk, standin_calls
from vm.fixtures import TIMINGS, say, vm_factory, vm_image  # noqa: F401  (fixtures)
from vm.image import BASE_HOSTNAME, STATE_DIR
from vm.seed import POWEROFF_VENDOR_DATA, read_iso, seed_iso

pytestmark = pytest.mark.vm

MAC = "52:54:00:5a:01:08"
ADDRESS = "10.77.5.10"

USER_DATA = b"""#cloud-config
hostname: infra-smoke
write_files:
  - path: /etc/smoke/secret.txt
    content: "hello from the seed\\n"
    permissions: "0640"
    owner: root:root
runcmd:
  - [/usr/bin/kubeadm, init, --config, /etc/smoke/secret.txt]
  - [/usr/bin/kubectl, apply, -f, /opt/bakery/calico/]
"""
META_DATA = b"instance-id: infra-smoke-1\nlocal-hostname: infra-smoke\n"
NETWORK_CONFIG = yaml.safe_dump({"version": 2, "ethernets": {"node": {
    "match": {"macaddress": MAC}, "set-name": "enp0s8", "addresses": [f"{ADDRESS}/24"]}}}).encode()


def test_seed_iso_round_trip(tmp_path):
    pytest.importorskip("pycdlib")
    iso = seed_iso(tmp_path / "seed.iso", files={"user-data": USER_DATA, "meta-data": META_DATA,
                                                 "network-config": NETWORK_CONFIG})
    files = read_iso(iso)
    assert files == {"user-data": USER_DATA, "meta-data": META_DATA, "network-config": NETWORK_CONFIG,
                     "vendor-data": POWEROFF_VENDOR_DATA}
    assert b"CIDATA" in iso.read_bytes()[32768:34816]  # the primary volume descriptor's id


def test_boot_hand_written_seed(vm_factory, tmp_path, capsys):
    iso = seed_iso(tmp_path / "seed.iso", files={"user-data": USER_DATA, "meta-data": META_DATA,
                                                 "network-config": NETWORK_CONFIG})
    vm = vm_factory("infra-smoke", iso, node_mac=MAC, timeout=600)
    t0 = time.monotonic()
    vm.start()
    vm.wait()
    say(capsys, f"image ready in {TIMINGS.get('image', 0):.0f}s; smoke boot {time.monotonic() - t0:.0f}s")
    disk = Disk(vm.overlay)
    try:
        # cloud-init's verdict: every stage ran, no errors, powered off by vendor-data's power_state
        result = disk.json("/var/lib/cloud/data/result.json")["v1"]
        assert result["errors"] == [], result
        assert result["datasource"].startswith("DataSourceNoCloud"), result
        status = disk.json("/var/lib/cloud/data/status.json")["v1"]
        for stage in ("init-local", "init", "modules-config", "modules-final"):
            assert status[stage]["finished"], (stage, status)
            assert status[stage]["errors"] == [], (stage, status)
        live = disk.text(f"{STATE_DIR}/cloud-init-status.txt")
        assert "status: done" in live, live
        assert "Cloud-init v." in vm.serial_text() and "finished at" in vm.serial_text()
        # the vendor-data was merged, user-data untouched
        assert disk.cat("/var/lib/cloud/instance/user-data.txt") == USER_DATA
        assert b"power_state" in disk.cat("/var/lib/cloud/instance/vendor-data.txt")
        # hostname, live and on disk
        assert disk.text(f"{STATE_DIR}/hostname").strip() == "infra-smoke"
        assert disk.text("/etc/hostname").strip() == "infra-smoke" != BASE_HOSTNAME
        # exactly the static address on enp0s8, and it is the NIC with the seed's MAC
        links = {i["ifname"]: i for i in json.loads(disk.cat(f"{STATE_DIR}/ip-addr.json"))}
        assert links["enp0s8"]["address"] == MAC
        v4 = [(a["local"], a["prefixlen"]) for a in links["enp0s8"]["addr_info"] if a["family"] == "inet"]
        assert v4 == [(ADDRESS, 24)]
        assert "enp0s3" in links
        # a written file keeps the mode and owner asked for
        st = disk.stat("/etc/smoke/secret.txt")
        assert (st.mode, st.uid, st.gid) == (0o640, 0, 0)
        # the stand-ins recorded their calls and copies of their files, in order
        calls = standin_calls(disk)
        kubeadm, kubectl = [c for c in calls if c.tool in ("kubeadm", "kubectl")]
        assert kubeadm.argv == ("init", "--config", "/etc/smoke/secret.txt")
        assert kubeadm.file("/etc/smoke/secret.txt") == b"hello from the seed\n"
        assert kubectl.argv == ("apply", "-f", "/opt/bakery/calico/")
        assert sorted(kubectl.file("/opt/bakery/calico/")) == ["SHA256SUMS",
            "operator-crds.yaml", "tigera-operator.yaml", "v1_crd_projectcalico_org.yaml"]
        assert kubeadm.seq < kubectl.seq
        # the whole-disk scan finds what is there
        assert disk.find_bytes(b"hello from the seed")
    finally:
        disk.remove()
