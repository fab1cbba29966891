"""The per-node half of the site's settings (issue 18): the run-time proxy, NTP, the first-boot
commands, the Kubernetes component settings, the audit log and encryption at rest, checked on
examples/enterprise/cluster.yaml (which uses every field) by their consumers:

- cloud-init's schema for every user-data; apt-config for apt's proxy file; bash for the values
  file; shellcheck for the script;
- the systemd drop-ins as systemd's parser reads them (tests/standins/contracts.py, after
  src/core/load-fragment.c) and, for syntax, `systemd-analyze verify`;
- every kubeadm document strictly against the vendored kubeadm and kubelet field trees; the
  audit Policy and the EncryptionConfiguration against the API server's rules
  (tests/standins/apiserver.py), whose own rules are tested here too;
- the rehearsal (tests/lab) runs the real first-boot script against the stand-ins: containerd
  restarts with the proxy, a failing preCommand stops the boot with its line, postCommands run
  last, a joining control-plane node needs the audit and encryption files.
"""
from __future__ import annotations

import base64
import os

import pytest
import yaml

from bakery import owned
from bakery.pki import bundle as secrets
from bakery.spec.pipeline import load_cluster

from conftest import EXAMPLES

ENTERPRISE = EXAMPLES / "enterprise" / "cluster.yaml"
KUBEADM_CONFIG = "/etc/bakery/kubeadm.yaml"
VALUES = "/etc/bakery/firstboot.env"
SCRIPT = "/usr/local/lib/bakery/firstboot.sh"
DROP_INS = ("/etc/systemd/system/containerd.service.d/50-bakery-proxy.conf",
            "/etc/systemd/system/kubelet.service.d/50-bakery-proxy.conf")
APT_PROXY = "/etc/apt/apt.conf.d/90bakery-proxy"
CONTROL_PLANE_ONLY = (owned.AUDIT_POLICY, owned.ENCRYPTION_CONFIG)




def good_bundle_doc() -> dict:
    cluster, _ = load_cluster(str(ENTERPRISE))
    return yaml.safe_load(secrets.new_bundle(cluster).to_bytes())


@pytest.mark.parametrize("bad", [
    "short", "long", "not base64", "url alphabet", "trailing newline", "a number", "one byte repeated"])
def test_a_tampered_encryption_key_is_refused(bad):
    doc = good_bundle_doc()
    key = doc["encryptionKey"]
    doc["encryptionKey"] = {
        "short": base64.b64encode(os.urandom(31)).decode(),
        "long": base64.b64encode(os.urandom(33)).decode(),
        "not base64": "*" * 44,
        "url alphabet": base64.urlsafe_b64encode(b"\xfb" * 16 + os.urandom(16)).decode(),
        "trailing newline": key + "\n",
        "a number": 12345,
        "one byte repeated": base64.b64encode(b"\x00" * 32).decode(),
    }[bad]
    with pytest.raises(secrets.BadBundle) as exc:
        secrets.parse(yaml.safe_dump(doc).encode())
    assert "encryptionKey" in str(exc.value)
    assert str(doc["encryptionKey"]).strip() not in str(exc.value)


def test_a_good_key_reads_back():
    doc = good_bundle_doc()
    b = secrets.parse(yaml.safe_dump(doc).encode())
    assert b.encryption_key == doc["encryptionKey"] and doc["encryptionKey"] not in repr(b)
