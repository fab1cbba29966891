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
import copy
import os
from pathlib import Path

import pytest
import yaml
from standins import apiserver
from standins.contracts import UnitSyntaxError, systemd_words, unit_environment

from bakery import owned
from bakery.pki import bundle as secrets
from bakery.seed import audit, site
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




def test_the_unit_reader_refuses_what_systemd_reads_otherwise():
    with pytest.raises(UnitSyntaxError):
        systemd_words('"A=b')
    with pytest.raises(UnitSyntaxError):
        systemd_words("A=%h")  # a specifier: expanded by systemd, never meant by bakery
    with pytest.raises(UnitSyntaxError):
        unit_environment("Environment=A=b\n")  # outside any section
    assert systemd_words('"A=b c" D=e') == ["A=b c", "D=e"]
    with pytest.raises(ValueError):
        site.systemd_word("A=b\nc")


def test_the_api_server_stand_in_refuses_broken_files(tmp_path):
    good_key = base64.b64encode(bytes(range(32))).decode()
    enc = {"apiVersion": "apiserver.config.k8s.io/v1", "kind": "EncryptionConfiguration",
           "resources": [{"resources": ["secrets"], "providers": [{"secretbox": {"keys": [{"name": "k", "secret": good_key}]}},
                                                                  {"identity": {}}]}]}
    assert apiserver.check_encryption(enc) == []

    def broken(fn) -> list[str]:
        d = copy.deepcopy(enc)
        fn(d)
        return apiserver.check_encryption(d)
    short = base64.b64encode(bytes(16)).decode()
    assert any("16 bytes" in e for e in broken(lambda d: d["resources"][0]["providers"][0]["secretbox"]["keys"][0].update(secret=short)))
    assert any("not base64" in e for e in broken(lambda d: d["resources"][0]["providers"][0]["secretbox"]["keys"][0].update(secret="!!")))
    assert any("exactly one" in e for e in broken(lambda d: d["resources"][0]["providers"][0].update(identity={})))
    assert any("unknown field" in e for e in broken(lambda d: d.update(resource=[])))
    assert any("at least one provider" in e for e in broken(lambda d: d["resources"][0].update(providers=[])))
    assert any("duplicate" in e for e in broken(lambda d: d["resources"][0]["providers"][0]["secretbox"]["keys"].append(
        {"name": "k", "secret": good_key})))

    pol = copy.deepcopy(audit.DEFAULT_POLICY)
    assert apiserver.check_policy(pol) == []
    assert apiserver.check_policy({**pol, "rules": [{"level": "Everything"}]})
    assert apiserver.check_policy({**pol, "rules": [{"level": "None", "nonResourceURLs": ["/a*b"]}]})
    assert apiserver.check_policy({**pol, "rules": [{"level": "None", "nonResourceURLs": ["/a"],
                                                      "resources": [{"group": ""}]}]})
    assert apiserver.check_policy({**pol, "omitStages": ["Received"]})
    assert apiserver.check_policy({**pol, "rules": [{"level": "None", "verb": ["get"]}]})

    # the pod: a missing file, a flag outside every volume, a read-only log folder
    api = {"extraArgs": [{"name": "audit-policy-file", "value": owned.AUDIT_POLICY},
                         {"name": "audit-log-path", "value": owned.AUDIT_LOG}],
           "extraVolumes": audit.volumes()}
    root = tmp_path / "root"

    def at(p: str) -> Path:
        return root / p.lstrip("/")
    assert any("is not a file" in e for e in apiserver.check(api, at))
    at(owned.AUDIT_POLICY).parent.mkdir(parents=True)
    at(owned.AUDIT_POLICY).write_text(yaml.safe_dump(pol))
    assert apiserver.check(api, at) == []
    ro = copy.deepcopy(api)
    ro["extraVolumes"][1]["readOnly"] = True
    assert any("writable" in e for e in apiserver.check(ro, at))
    hidden = copy.deepcopy(api)
    hidden["extraVolumes"] = hidden["extraVolumes"][1:]
    assert any("not in any volume" in e for e in apiserver.check(hidden, at))


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
