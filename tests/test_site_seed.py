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
import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

import pytest
import yaml
from standins import apiserver
from standins.contracts import UnitSyntaxError, systemd_words, unit_environment, validate_kube_doc

from bakery import owned
from bakery.pki import bundle as secrets
from bakery.plan import proxy
from bakery.seed import audit, kubeadm, site
from bakery.spec.pipeline import load_cluster

from conftest import EXAMPLES, ROOT, cloud_init, need, render_here, run_bakery

ENTERPRISE = EXAMPLES / "enterprise" / "cluster.yaml"
KUBEADM_CONFIG = "/etc/bakery/kubeadm.yaml"
VALUES = "/etc/bakery/firstboot.env"
SCRIPT = "/usr/local/lib/bakery/firstboot.sh"
DROP_INS = ("/etc/systemd/system/containerd.service.d/50-bakery-proxy.conf",
            "/etc/systemd/system/kubelet.service.d/50-bakery-proxy.conf")
APT_PROXY = "/etc/apt/apt.conf.d/90bakery-proxy"
CONTROL_PLANE_ONLY = (owned.AUDIT_POLICY, owned.ENCRYPTION_CONFIG)


@pytest.fixture(scope="module")
def ent(renders):
    return renders.example("enterprise")


@pytest.fixture(scope="module")
def spec() -> dict:
    return yaml.safe_load(ENTERPRISE.read_text())["spec"]


def user_data(out: Path, node: str) -> dict:
    text = (out / "nodes" / node / "user-data").read_text()
    assert text.startswith("#cloud-config\n")
    return yaml.safe_load(text)


def written(out: Path, node: str) -> dict[str, dict]:
    return {f["path"]: f for f in user_data(out, node)["write_files"]}


def nodes(spec: dict) -> list[dict]:
    return spec["nodes"]


def kubeadm_docs(out: Path, node: str) -> dict[str, dict]:
    return {d["kind"]: d for d in yaml.safe_load_all(written(out, node)[KUBEADM_CONFIG]["content"])}


def args(component: dict) -> dict[str, str]:
    pairs = component["extraArgs"]
    assert isinstance(pairs, list) and all(set(p) == {"name", "value"} for p in pairs)
    return {p["name"]: p["value"] for p in pairs}


# -- cloud-init ---------------------------------------------------------------------------

def test_cloud_init_accepts_every_user_data(ent, spec):
    need("cloud-init")
    for n in nodes(spec):
        r = cloud_init("schema", "-c", ent / "nodes" / n["name"] / "user-data")
        assert r.returncode == 0 and "Valid cloud-config" in r.stdout, (n["name"], r.stdout, r.stderr)
        assert "deprecat" not in (r.stdout + r.stderr).lower()


def test_ntp_uses_the_site_servers_with_timesyncd(ent, spec, tmp_path):
    for n in nodes(spec):
        assert user_data(ent, n["name"])["ntp"] == {"enabled": True, "ntp_client": "systemd-timesyncd",
                                                    "servers": spec["ntp"]["servers"]}
    # the schema check above can fail on this module: a misspelt key is refused
    need("cloud-init")
    text = (ent / "nodes" / "cp1" / "user-data").read_text().replace("ntp_client:", "ntp_clients:")
    (tmp_path / "ud").write_text(text)
    r = cloud_init("schema", "-c", tmp_path / "ud")
    assert r.returncode != 0 and "ntp_clients" in r.stderr, r.stderr


def test_ntp_on_ubuntu_26_04_configures_its_chrony(renders, spec):
    """26.04's time daemon is chrony (versions.CHRONY): cloud-init's ntp module configures it,
    and the image has it, not systemd-timesyncd, which would remove it."""
    need("cloud-init")
    out = renders.text(ENTERPRISE.read_text().replace("os: ubuntu-24.04", "os: ubuntu-26.04"))
    for n in nodes(spec):
        ud = user_data(out, n["name"])
        assert ud["ntp"] == {"enabled": True, "ntp_client": "chrony", "servers": spec["ntp"]["servers"]}
        r = cloud_init("schema", "-c", out / "nodes" / n["name"] / "user-data")
        assert r.returncode == 0 and "Valid cloud-config" in r.stdout, (n["name"], r.stdout, r.stderr)
    prepare = (out / "packer/scripts/05-prepare.sh").read_text()
    install = next(ln for ln in prepare.splitlines() if ln.startswith("apt_get install"))
    assert " chrony" in install and "systemd-timesyncd" not in install
    exp = json.loads((out / "packer/files/opt/bakery/node-check.json").read_text())
    assert exp["timeDaemon"] == {"package": "chrony", "file": "/usr/sbin/chronyd"}


def test_no_ntp_and_no_proxy_without_the_settings(renders):
    ud = user_data(renders.example("lab"), "k8s-master")
    assert "ntp" not in ud
    paths = {f["path"] for f in ud["write_files"]}
    assert not paths & {*DROP_INS, APT_PROXY, *CONTROL_PLANE_ONLY}


# -- the run-time proxy ---------------------------------------------------------------------

def test_the_drop_ins_give_containerd_and_the_kubelet_the_proxy(ent, spec):
    px = spec["proxy"]
    net = spec["network"]
    for n in nodes(spec):
        files = written(ent, n["name"])
        for path in DROP_INS:
            assert files[path]["permissions"] == "0600"  # the URL may carry credentials
            env = unit_environment(files[path]["content"])
            assert env["HTTP_PROXY"] == env["http_proxy"] == px["http"]
            assert env["HTTPS_PROXY"] == env["https_proxy"] == px["https"]
            assert env["NO_PROXY"] == env["no_proxy"]
            no_proxy = env["NO_PROXY"].split(",")
            assert len(no_proxy) == len(set(no_proxy))
            endpoint = nodes(spec)[0]["address"]  # no VIP: the init node's address
            for want in ("localhost", "127.0.0.1", "::1", net["nodeCidr"], net["podCidr"], net["serviceCidr"],
                         ".svc", "cluster.local", endpoint, *px["noProxy"]):
                assert want in no_proxy, (path, want)


def test_systemd_accepts_the_drop_ins(ent, tmp_path):
    need("systemd-analyze")
    units = tmp_path / "units"
    (units / "containerd.service.d").mkdir(parents=True)
    (units / "containerd.service").write_text("[Unit]\nDescription=x\n[Service]\nExecStart=/bin/true\n")
    (units / "containerd.service.d" / "50-bakery-proxy.conf").write_text(written(ent, "worker1")[DROP_INS[0]]["content"])
    env = dict(os.environ, SYSTEMD_UNIT_PATH=f"{units}:")
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(units / "containerd.service")],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr
    # and it can fail: a broken drop-in is reported
    (units / "containerd.service.d" / "50-bakery-proxy.conf").write_text('[Service]\nEnvironment="A=b\n')
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(units / "containerd.service")],
                       capture_output=True, text=True, env=env)
    assert "50-bakery-proxy.conf:2: Invalid syntax" in r.stderr, r.stderr


@pytest.mark.parametrize("value", ["http://u:p%40ss@proxy:3128", 'a "quoted" \\ back slash', "spaces and $HOME %h"])
def test_a_systemd_word_reads_back_as_written(value):
    """systemd_word quotes what systemd unquotes (C escapes, %% for %, $ not special)."""
    text = f"[Service]\nEnvironment={site.systemd_word(f'X={value}')}\n"
    assert unit_environment(text) == {"X": value}


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


def test_apt_reads_the_proxy_and_goes_direct_to_the_mirrors(ent, spec, tmp_path):
    need("apt-config")
    f = written(ent, "worker2")[APT_PROXY]
    assert f["permissions"] == "0600"
    conf = tmp_path / "apt.conf"
    conf.write_text(f["content"])
    r = subprocess.run(["apt-config", "-c", str(conf), "dump"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    got = dict(re.findall(r'^(Acquire::\S+) "(.*)";$', r.stdout, re.M))
    assert got["Acquire::http::Proxy"] == spec["proxy"]["http"]
    assert got["Acquire::https::Proxy"] == spec["proxy"]["https"]
    # the mirrors are under .corp.example.com (noProxy): apt, which has no NO_PROXY, goes direct
    assert got["Acquire::http::Proxy::apt.corp.example.com"] == "DIRECT"
    assert got["Acquire::https::Proxy::artifacts.corp.example.com"] == "DIRECT"


def test_no_proxy_matching_follows_go():
    rules = ("localhost", ".svc", "corp.example.com", "10.0.0.0/8", "::1")
    assert proxy.bypasses("apt.corp.example.com", rules) and proxy.bypasses("corp.example.com", rules)
    assert proxy.bypasses("kubernetes.default.svc", rules) and proxy.bypasses("10.1.2.3", rules)
    assert not proxy.bypasses("svc", rules)  # ".svc": subdomains only
    assert not proxy.bypasses("example.com", rules) and not proxy.bypasses("11.0.0.1", rules)
    assert not proxy.bypasses("notcorp.example.com", ("corp.example.com",))


# -- the first-boot script and its values ------------------------------------------------------

def test_the_values_hold_the_commands_as_bash_reads_them(ent, spec, tmp_path):
    need("bash")
    for n in nodes(spec):
        f = written(ent, n["name"])[VALUES]
        assert f["permissions"] == "0600"
        (tmp_path / "v").write_text(f["content"])
        r = subprocess.run(["bash", "-c", '. "$1"; for c in "${PRE_COMMANDS[@]}"; do printf "pre\\0%s\\0" "$c"; done; '
                            'for c in "${POST_COMMANDS[@]}"; do printf "post\\0%s\\0" "$c"; done; '
                            'for c in "${COMMANDS_ENV[@]}"; do printf "env\\0%s\\0" "$c"; done; printf "rp\\0%s\\0" "$RUNTIME_PROXY"',
                            "_", str(tmp_path / "v")], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        parts = r.stdout.split("\0")[:-1]
        pairs = list(zip(parts[::2], parts[1::2], strict=True))
        assert [v for k, v in pairs if k == "pre"] == spec["firstBoot"]["preCommands"]
        assert [v for k, v in pairs if k == "post"] == spec["firstBoot"]["postCommands"]
        env = dict(v.split("=", 1) for k, v in pairs if k == "env")
        assert env["HTTPS_PROXY"] == spec["proxy"]["https"] and "cluster.local" in env["NO_PROXY"].split(",")
        assert [v for k, v in pairs if k == "rp"] == ["1"]


def test_the_script_and_values_pass_shellcheck(ent, spec, tmp_path):
    need("shellcheck")
    files = written(ent, "cp1")
    (tmp_path / "firstboot.sh").write_text(files[SCRIPT]["content"])
    paths = [tmp_path / "firstboot.sh"]
    for n in nodes(spec):
        paths.append(tmp_path / f"{n['name']}.env")
        paths[-1].write_text(written(ent, n["name"])[VALUES]["content"])
    r = subprocess.run(["shellcheck", "-S", "style", *map(str, paths)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


def test_the_script_orders_the_steps(ent):
    """Proxy restart, preCommands, node check, kubeadm ... , then postCommands, in main()."""
    script = written(ent, "cp1")[SCRIPT]["content"]
    main = script[script.index("\nmain() {"):]
    order = ["step runtime-proxy runtime_proxy", 'site_commands preCommands "${PRE_COMMANDS[@]}"',
             "step node-check node_check", "step kubeadm run_init", "step cni install_cni",
             'site_commands postCommands "${POST_COMMANDS[@]}"', 'printf \'%s %s\\n\' "$ACTION"']
    at = [main.index(s) for s in order]
    assert at == sorted(at), at


# -- kubeadm --------------------------------------------------------------------------------------

def test_every_kubeadm_document_matches_the_spec(ent, spec):
    for n in nodes(spec):
        for kind, doc in kubeadm_docs(ent, n["name"]).items():
            assert validate_kube_doc(doc) == [], (n["name"], kind, validate_kube_doc(doc))


def test_the_site_settings_are_in_the_init_documents(ent, spec):
    k = spec["kubernetes"]
    docs = kubeadm_docs(ent, "cp1")
    cc, kubelet = docs["ClusterConfiguration"], docs["KubeletConfiguration"]
    api = args(cc["apiServer"])
    for name, value in k["apiServer"]["extraArgs"].items():
        assert api[name] == value
    assert args(cc["controllerManager"]) == k["controllerManager"]["extraArgs"]
    assert args(cc["scheduler"]) == k["scheduler"]["extraArgs"]
    assert cc["apiServer"]["certSANs"][0] == nodes(spec)[0]["address"]
    assert set(k["apiServer"]["certSANs"]) <= set(cc["apiServer"]["certSANs"])
    for field, value in k["kubelet"].items():
        assert kubelet[field] == value
    assert kubelet["cgroupDriver"] == "systemd"
    # the flags bakery sets itself are the values bakery/owned.py gives the validator
    for name, o in owned.API_SERVER_FLAGS.items():
        if o.value is not None:
            assert api[name] == o.value, name
    assert kubelet["cgroupDriver"] == owned.KUBELET_FIELDS["cgroupDriver"].value
    assert docs["InitConfiguration"]["nodeRegistration"]["criSocket"] == \
        owned.KUBELET_FIELDS["containerRuntimeEndpoint"].value
    # audit and encryption: flags and read-only volumes for the files, a writable log folder
    vols = {v["hostPath"]: v for v in cc["apiServer"]["extraVolumes"]}
    assert vols[api["audit-policy-file"]] | {} == {"name": "audit-policy", "hostPath": owned.AUDIT_POLICY,
                                                    "mountPath": owned.AUDIT_POLICY, "readOnly": True, "pathType": "File"}
    assert vols[api["encryption-provider-config"]]["readOnly"] is True
    assert vols[api["encryption-provider-config"]]["pathType"] == "File"
    log_dir = vols[os.path.dirname(api["audit-log-path"])]
    assert log_dir["readOnly"] is False and log_dir["pathType"] == "DirectoryOrCreate"
    # joining nodes carry none of it: kubeadm gives them the cluster's
    for n in nodes(spec)[1:]:
        assert set(kubeadm_docs(ent, n["name"])) == {"JoinConfiguration"}


def test_owned_settings_allow_only_bakery_s_own_value():
    """The validator's rule (bakery/owned.py): a fixed setting accepts bakery's value alone, a
    derived one nothing; every entry says where the setting is made instead."""
    assert owned.KUBELET_FIELDS["cgroupDriver"].allows("systemd")
    assert not owned.KUBELET_FIELDS["cgroupDriver"].allows("cgroupfs")
    assert not owned.KUBELET_FIELDS["clusterDomain"].allows("cluster.local")
    assert owned.API_SERVER_FLAGS["audit-log-maxage"].allows("30")
    assert not owned.API_SERVER_FLAGS["audit-log-maxage"].allows(30)  # flags are strings
    assert set(owned.COMPONENT_FLAGS) == {"apiServer", "controllerManager", "scheduler"}
    for table in (owned.KUBELET_FIELDS, *owned.COMPONENT_FLAGS.values()):
        assert all(o.instead for o in table.values())


def test_bakery_s_own_kubelet_fields_win():
    cluster, _ = load_cluster(str(ENTERPRISE))
    settings = replace(cluster.settings, kubelet=MappingProxyType({"cgroupDriver": "cgroupfs", "maxPods": 10,
                                                                  "kind": "Other"}))
    doc = kubeadm.kubelet_configuration(replace(cluster, settings=settings))
    assert doc["cgroupDriver"] == "systemd" and doc["kind"] == "KubeletConfiguration" and doc["maxPods"] == 10
    assert cluster.settings.kubelet.get("cgroupDriver") is None  # the model was not changed


def test_v1beta3_takes_extra_args_as_a_map():
    cluster, _ = load_cluster(str(ENTERPRISE))
    old = replace(cluster, kubernetes=replace(cluster.kubernetes, kubeadm_api="v1beta3"))
    assert kubeadm.extra_args(old, [("a", "1"), ("b", "2")]) == {"a": "1", "b": "2"}
    doc = {"apiVersion": "kubeadm.k8s.io/v1beta3", "kind": "ClusterConfiguration",
           "apiServer": {"extraArgs": kubeadm.extra_args(old, [("profiling", "false")]),
                         "extraVolumes": audit.volumes()}}
    assert validate_kube_doc(doc) == []
    doc["apiServer"]["extraArgs"] = kubeadm.extra_args(cluster, [("profiling", "false")])  # v1beta4's list
    assert validate_kube_doc(doc)


# -- control-plane files ------------------------------------------------------------------------

def test_audit_and_encryption_files_are_on_control_plane_nodes_only(ent, spec, tmp_path):
    for n in nodes(spec):
        files = written(ent, n["name"])
        if n["role"] == "worker":
            assert not set(CONTROL_PLANE_ONLY) & set(files), n["name"]
            continue
        assert files[owned.ENCRYPTION_CONFIG]["permissions"] == "0600"
        policy = yaml.safe_load(files[owned.AUDIT_POLICY]["content"])
        assert apiserver.check_policy(policy) == []
        enc = yaml.safe_load(files[owned.ENCRYPTION_CONFIG]["content"])
        assert apiserver.check_encryption(enc) == []
        (rc,) = enc["resources"]
        assert rc["resources"] == ["secrets"] and list(rc["providers"][0]) == ["secretbox"]
        assert rc["providers"][1] == {"identity": {}}
        # the API server starts with these files and the init node's ClusterConfiguration
        root = tmp_path / n["name"]
        for path in CONTROL_PLANE_ONLY:
            (root / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
            (root / path.lstrip("/")).write_text(files[path]["content"])
        api_server = kubeadm_docs(ent, "cp1")["ClusterConfiguration"]["apiServer"]
        assert apiserver.check(api_server, lambda p, r=root: r / p.lstrip("/")) == []


def level_for(policy: dict, *, verb: str = "get", group: str = "", resource: str = "", url: str = "") -> str:
    """The level of the first matching rule (k8s.io/apiserver/pkg/audit/policy/checker.go
    ruleMatches), for a request by anyone: resource requests match resources, non-resource ones
    nonResourceURLs (a final * is a prefix), a rule with neither matches both."""
    for r in policy["rules"]:
        if r.get("verbs") and verb not in r["verbs"]:
            continue
        if url:
            if r.get("resources"):
                continue
            urls = r.get("nonResourceURLs")
            if urls and not any(url == u or (u.endswith("*") and url.startswith(u[:-1])) for u in urls):
                continue
        else:
            if r.get("nonResourceURLs"):
                continue
            grs = r.get("resources")
            if grs and not any(g.get("group", "") == group and (not g.get("resources") or resource in g["resources"])
                               for g in grs):
                continue
        return r["level"]
    return "None"


def test_the_default_audit_policy_never_logs_a_secret_s_body():
    p = audit.DEFAULT_POLICY
    assert p["omitStages"] == ["RequestReceived"]
    for url in ("/healthz", "/livez", "/readyz", "/readyz/etcd", "/version"):
        assert level_for(p, url=url) == "None", url
    assert level_for(p, url="/metrics") == "Metadata"
    assert level_for(p, verb="create", resource="events") == "None"
    assert level_for(p, verb="create", group="events.k8s.io", resource="events") == "None"
    for verb in ("get", "list", "watch", "create", "update", "patch", "delete"):
        for group, resource in (("", "secrets"), ("", "configmaps"), ("", "serviceaccounts/token"),
                                ("authentication.k8s.io", "tokenreviews"), ("apps", "deployments"),
                                ("example.com", "widgets")):
            assert level_for(p, verb=verb, group=group, resource=resource) == "Metadata", (verb, resource)
    assert not [r for r in p["rules"] if r["level"] in ("Request", "RequestResponse")]


def test_a_site_policy_is_written_as_given(renders, tmp_path):
    mine = {"apiVersion": "audit.k8s.io/v1", "kind": "Policy",
            "rules": [{"level": "RequestResponse", "resources": [{"group": "", "resources": ["pods"]}]},
                      {"level": "Metadata"}]}
    text = ENTERPRISE.read_text().replace("auditPolicy: {enabled: true}",
                                          "auditPolicy: {enabled: true, policy: " + yaml.safe_dump(mine, default_flow_style=True).strip() + "}")
    assert text != ENTERPRISE.read_text()
    out = renders.text(text)
    assert yaml.safe_load(written(out, "cp1")[owned.AUDIT_POLICY]["content"]) == mine


# -- the stand-in API server's rules can fail ------------------------------------------------------

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


# -- the encryption key ---------------------------------------------------------------------------

def key_of(out: Path) -> str:
    return yaml.safe_load((out / "secrets.yaml").read_text())["encryptionKey"]


def test_the_encryption_key_is_stable_and_only_where_it_is_needed(ent, spec, tmp_path):
    key = key_of(ent)
    assert len(base64.b64decode(key, validate=True)) == 32
    again = tmp_path / "again"
    r = run_bakery("render", ENTERPRISE, "--out", again, "--secrets", ent / "secrets.yaml")
    assert r.returncode == 0, r.stderr
    assert key not in r.stdout + r.stderr
    assert key_of(ent) == key
    # a control-plane node's user-data, as written and as delivered (its seed ISO, its Proxmox snippet)
    cp = {f for n in nodes(spec) if n["role"] == "control-plane"
          for f in (f"nodes/{n['name']}/user-data", f"nodes/{n['name']}/seed.iso",
                    f"proxmox/snippets/{yaml.safe_load(ENTERPRISE.read_text())['metadata']['name']}_{n['name']}-user.yaml")}
    for tree in (ent, again):
        holders = {p.relative_to(tree).as_posix() for p in tree.rglob("*")
                   if p.is_file() and not p.is_symlink() and key.encode() in p.read_bytes()}
        assert holders == cp | ({"secrets.yaml"} if tree == ent else set()), holders
        assert all((tree / h).stat().st_mode & 0o077 == 0 for h in holders), holders
    for n in nodes(spec):
        if n["role"] == "control-plane":
            enc = yaml.safe_load(written(again, n["name"])[owned.ENCRYPTION_CONFIG]["content"])
            assert enc["resources"][0]["providers"][0]["secretbox"]["keys"][0]["secret"] == key


def test_a_bundle_without_a_key_gets_one_once(tmp_path):
    off = ENTERPRISE.read_text().replace("encryptionAtRest: true", "encryptionAtRest: false")
    assert off != ENTERPRISE.read_text()
    (tmp_path / "off.yaml").write_text(off)
    out = tmp_path / "out"
    render_here(tmp_path / "off.yaml", out)
    bundle = tmp_path / "bundle.yaml"
    bundle.write_bytes((out / "secrets.yaml").read_bytes())
    bundle.chmod(0o600)
    before = yaml.safe_load(bundle.read_text())
    assert "encryptionKey" not in before
    assert owned.ENCRYPTION_CONFIG not in written(out, "cp1")
    r = run_bakery("render", ENTERPRISE, "--out", tmp_path / "on", "--secrets", bundle)
    assert r.returncode == 0, r.stderr
    after = yaml.safe_load(bundle.read_text())
    key = after.pop("encryptionKey")
    assert after == before  # nothing else changed
    assert "added an encryption-at-rest key" in r.stdout + r.stderr and key not in r.stdout + r.stderr
    r = run_bakery("render", ENTERPRISE, "--out", tmp_path / "on2", "--secrets", bundle)
    assert r.returncode == 0 and "encryption-at-rest key" not in r.stdout + r.stderr
    assert yaml.safe_load(bundle.read_text())["encryptionKey"] == key
    # render --check does not write the key into a bundle that lacks it
    plain = tmp_path / "plain.yaml"
    plain.write_bytes((out / "secrets.yaml").read_bytes())
    plain.chmod(0o600)
    r = run_bakery("render", ENTERPRISE, "--out", tmp_path / "on", "--secrets", plain, "--check")
    assert "encryptionKey" not in plain.read_text() and "a render adds one" in r.stdout + r.stderr


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


# -- rehearsal ----------------------------------------------------------------------------------

rehearsal = pytest.mark.skipif(os.geteuid() != 0, reason="the rehearsal needs root (namespaces, mounts, chroot)")


def play(out: Path, **kw):
    sys.path.insert(0, str(ROOT / "tests"))
    from lab.driver import rehearse
    return rehearse(out, say=lambda line: None, **kw)


@rehearsal
def test_the_enterprise_cluster_rehearses(ent, spec, tmp_path):
    result = play(ent, keep=tmp_path)
    assert result.ok, f"{result.failure}\n" + "\n".join(result.lines[-8:])
    for n in nodes(spec):
        name = n["name"]
        steps = [ln.split(": ")[1] for ln in result.lines if ln.startswith(f"{name}: ")]
        assert steps[:4] == ["write_files", "runtime-proxy", "preCommands[0]", "node-check"], steps
        assert steps[-2:] == ["postCommands[0]", "sentinel"], steps
        # containerd restarted with the proxy from its drop-in
        env = result.state["units"][name]["containerd.service"]
        assert env["HTTPS_PROXY"] == spec["proxy"]["https"] and "cluster.local" in env["NO_PROXY"].split(",")
        root = result.root(name)
        assert (root / "var/lib/corp/joined").is_file()  # the postCommand ran
        assert "first boot of " in (root / "var/log/corp-firstboot.log").read_text()  # the preCommand ran
    assert [ln for ln in result.lines if ln.startswith("cluster:")][-1] == "cluster: secrets: ok"


def variant(renders, **changes: str) -> Path:
    text = ENTERPRISE.read_text()
    for old, new in changes.items():
        assert old in text, old
        text = text.replace(old, new)
    return renders.text(text)


@rehearsal
def test_a_failing_pre_command_stops_the_first_boot_with_its_line(renders):
    out = variant(renders, **{"preCommands: [": "preCommands: ['true', 'echo boom >&2; exit 3', "})
    result = play(out)
    assert result.failure is not None
    f = result.failure
    assert (f.node, f.step) == ("cp1", "preCommands[1]"), str(f)
    assert "spec.firstBoot.preCommands[1] exited 3: echo boom >&2; exit 3" in f.reason
    assert not [c for c in result.calls["cp1"] if c.startswith("kubeadm")]
    failed = [ln for ln in result.consoles["cp1"].splitlines() if ln.startswith("bakery-firstboot: FAILED")]
    assert len(failed) == 1 and "boom" in result.consoles["cp1"]


@rehearsal
def test_a_failed_post_command_resumes_at_itself_on_the_next_boot(renders, tmp_path):
    cmd = "test -e /var/lib/corp/again || { mkdir -p /var/lib/corp; touch /var/lib/corp/again; exit 1; }"
    out = variant(renders, **{"postCommands: [": f"postCommands: ['{cmd}', "})
    result = play(out, faults={n: {"boots": 2} for n in ("cp1", "worker1", "worker2")}, keep=tmp_path)
    assert result.ok, str(result.failure)
    console = result.consoles["cp1"]
    assert "spec.firstBoot.postCommands[0] exited 1" in console
    assert "step kubeadm: done on an earlier run" in console and "step preCommands[0]: done on an earlier run" in console
    assert [c.split()[1] for c in result.calls["cp1"] if c.startswith("kubeadm init")] == ["init"]


HA_NODES = """  nodes:
    - {name: cp1, role: control-plane, address: 10.20.0.10}
    - {name: cp2, role: control-plane, address: 10.20.0.11}
    - {name: cp3, role: control-plane, address: 10.20.0.12}
    - {name: worker1, role: worker, address: 10.20.0.21}
"""


def ha_text() -> str:
    text = ENTERPRISE.read_text()
    return text[:text.index("  nodes:\n")] + HA_NODES


@rehearsal
def test_joining_control_plane_nodes_need_the_api_server_files(renders, tmp_path):
    out = renders.text(ha_text())
    result = play(out)
    assert result.ok, str(result.failure)
    # without the audit policy on cp2, its API server (made from the cluster's configuration) fails
    broken = renders.copy(out, tmp_path / "out")
    ud = user_data(broken, "cp2")
    ud["write_files"] = [f for f in ud["write_files"] if f["path"] != owned.AUDIT_POLICY]
    (broken / "nodes" / "cp2" / "user-data").write_text("#cloud-config\n" + yaml.safe_dump(ud, sort_keys=False))
    result = play(broken)
    assert result.failure is not None and (result.failure.node, result.failure.step) == ("cp2", "kubeadm")
    assert "hostPath type check failed" in result.failure.reason


@rehearsal
def test_containerd_restarted_before_the_reload_is_refused(renders, tmp_path):
    """The stand-in systemctl holds systemd's contract: a drop-in written after the last
    daemon-reload is not in effect after a restart (here neither runcmd nor the script reloads)."""
    out = renders.copy(renders.example("enterprise"), tmp_path / "out")
    ud = user_data(out, "cp1")
    ud["runcmd"] = [c for c in ud["runcmd"] if c != ["systemctl", "daemon-reload"]]
    for f in ud["write_files"]:
        if f["path"] == SCRIPT:
            f["content"] = f["content"].replace(
                '  run systemctl daemon-reload || fail "systemctl daemon-reload failed; containerd would not use the proxy"\n', "")
    (out / "nodes" / "cp1" / "user-data").write_text("#cloud-config\n" + yaml.safe_dump(ud, sort_keys=False))
    result = play(out)
    assert result.failure is not None and (result.failure.node, result.failure.step) == ("cp1", "runtime-proxy")
    assert "since the last daemon-reload" in result.failure.reason
