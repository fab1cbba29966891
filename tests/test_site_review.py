"""Defects found by the review of issue 18 (site settings), each pinned where its consumer reads
the output: tomllib and containerd's hosts.toml fields, shellcheck, the validator's verdicts."""
from __future__ import annotations

import subprocess
import tomllib

import yaml

from conftest import ROOT, need

ENTERPRISE = ROOT / "examples" / "enterprise" / "cluster.yaml"


def site_text(mutate) -> str:
    data = yaml.safe_load(ENTERPRISE.read_text())
    mutate(data["spec"])
    return yaml.safe_dump(data, sort_keys=False)


def _validate(tmp_path, mutate):
    from bakery.spec.pipeline import check_file

    path = tmp_path / "cluster.yaml"
    path.write_text(site_text(mutate))
    return [(d.check, d.severity, d.message) for d in check_file(str(path)).report.diagnostics]


# --- a registry mirror without a /v2 path renders (it crashed the hosts.toml template) --------

def test_a_registry_mirror_without_v2_path_renders_a_hosts_toml_containerd_completes(renders):
    def plain(spec):
        spec["mirrors"]["registries"] = {"quay.io": "https://mirror.example.com",
                                         "docker.io": "https://registry.corp.example.com/v2/docker.io"}
    out = renders.text(site_text(plain))
    certs = out / "packer" / "files" / "etc" / "containerd" / "certs.d"
    quay = tomllib.loads((certs / "quay.io" / "hosts.toml").read_text())
    # containerd appends /v2 itself to a host without override_path (hosts.go parseHostConfig)
    assert quay == {"server": "https://quay.io",
                    "host": {"https://mirror.example.com": {"capabilities": ["pull", "resolve"]}}}
    docker = tomllib.loads((certs / "docker.io" / "hosts.toml").read_text())
    assert docker["host"]["https://registry.corp.example.com/v2/docker.io"]["override_path"] is True


# --- a Docker Hub mirror keyed by the registry's server name is never used ------------------

def test_docker_hub_mirror_under_its_server_name_is_refused_and_docker_io_passes(tmp_path):
    for alias in ("registry-1.docker.io", "index.docker.io"):
        found = _validate(tmp_path, lambda s, a=alias: s["mirrors"].update(registries={a: "https://m.example.com"}))
        assert [(c, sev) for c, sev, _ in found] == [("site-url", "error")], found
        assert "docker.io" in found[0][2]
    assert _validate(tmp_path, lambda s: s["mirrors"].update(registries={"docker.io": "https://m.example.com"})) == []


# --- image files the seal would remove or empty, or that replace a pinned binary --------------

def test_image_files_the_seal_removes_or_that_replace_pinned_binaries_are_refused(tmp_path):
    refused = ["/var/log/corp/agent.conf", "/var/lib/cloud/seed/nocloud/user-data",
               "/etc/cloud/cloud.cfg.d/99-installer.cfg", "/etc/netplan/00-installer-config-wifi.yaml",
               "/etc/netplan/50-cloud-init.yaml", "/root/.bash_history",
               "/usr/local/bin/containerd", "/usr/local/bin/containerd-shim-runc-v2", "/usr/local/bin/ctr",
               "/usr/local/sbin/runc", "/usr/local/bin/crictl", "/usr/bin/kubelet", "/usr/local/bin/kubeadm"]
    for p in refused:
        found = _validate(tmp_path, lambda s, p=p: s["image"].update(files=[{"path": p, "content": "x"}]))
        assert [(c, sev) for c, sev, _ in found] == [("image-file", "error")], (p, found)
    for p in ("/etc/netplan/60-corp.yaml", "/usr/local/bin/corp-tool", "/var/lib/corp/state", "/etc/cloud/corp.cfg"):
        assert _validate(tmp_path, lambda s, p=p: s["image"].update(files=[{"path": p, "content": "x"}])) == [], p


def test_the_seal_removes_what_the_validator_calls_sealed(renders):
    """The validator's list and the seal script are one list: each removed file is in the seal."""
    from bakery import nodefacts

    seal = (renders.text(site_text(lambda s: None)) / "packer" / "scripts" / "90-seal.sh").read_text()
    for p in (*nodefacts.CLOUD_INIT_LEFTOVERS, *nodefacts.CLOUD_INIT_GLOBS):
        assert p in seal, p
    assert "find /var/log -type f -exec truncate -s 0 {} +" in seal


# --- the kubelet's client CA is kubeadm's (the schema's description promised it) -------------

def test_the_kubelet_client_ca_is_refused_unless_kubeadm_s(tmp_path):
    from bakery import owned
    from bakery.plan import paths

    def kubelet(value):
        return lambda s: s["kubernetes"].update(kubelet=value)

    found = _validate(tmp_path, kubelet({"authentication": {"x509": {"clientCAFile": "/etc/corp/ca.crt"}}}))
    assert [(c, sev) for c, sev, _ in found] == [("kubelet-owned", "error")], found
    assert "authentication.x509.clientCAFile" in found[0][2]
    assert f"{paths.PKI_DIR}/ca.crt" == owned.KUBELET_CLIENT_CA
    for ok in ({"authentication": {"x509": {"clientCAFile": owned.KUBELET_CLIENT_CA}}},
               {"authentication": {"anonymous": {"enabled": False}}}, {"authentication": {"x509": {}}}):
        assert _validate(tmp_path, kubelet(ok)) == [], ok


# --- site commands with '$' keep the bake scripts shellcheck-clean ---------------------------

TRICKY = ["echo \"$HOME\" `date` $(hostname) ${X:-y} %{z} 'q' \\\\", "printf '%s\\n' \"a b\" | read -r v; echo \"$v\""]


def test_site_commands_with_dollars_pass_shellcheck_and_reach_bash_verbatim(renders, tmp_path):
    out = renders.text(site_text(lambda s: s["image"].update(commands=TRICKY)))
    script = out / "packer" / "scripts" / "60-site.sh"
    r = subprocess.run([need("shellcheck"), "--shell=bash", "--severity=style", str(script)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout
    # each line reaches run_site_command as the exact text of cluster.yaml
    text = script.read_text()
    body = text[text.index("run_site_command() {"):]
    probe = tmp_path / "probe.sh"
    probe.write_text("run_site_command() { printf '%s\\0' \"$2\"; }\n" +
                     "\n".join(ln for ln in body.splitlines() if ln.startswith("run_site_command ")) + "\n")
    got = subprocess.run(["bash", str(probe)], capture_output=True, text=True, check=True).stdout
    assert got.split("\0")[:-1] == TRICKY


def test_first_boot_commands_with_backslashes_pass_shellcheck_and_reach_bash_verbatim(renders, tmp_path):
    def fb(spec):
        spec["firstBoot"] = {"preCommands": TRICKY, "postCommands": TRICKY[::-1]}
    out = renders.text(site_text(fb))
    user_data = yaml.safe_load((out / "nodes" / "worker1" / "user-data").read_text())
    env = next(f["content"] for f in user_data["write_files"] if f["path"].endswith("/firstboot.env"))
    path = tmp_path / "firstboot.env"
    path.write_text(env)
    r = subprocess.run([need("shellcheck"), "--severity=style", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout
    got = subprocess.run(["bash", "-c", '. "$1"; printf "%s\\0" "${PRE_COMMANDS[@]}" "${POST_COMMANDS[@]}"',
                          "_", str(path)], capture_output=True, text=True, check=True).stdout
    assert got.split("\0")[:-1] == TRICKY + TRICKY[::-1]


# --- the bake reaches a mirror given by address in a noProxy CIDR directly --------------------

def _apt_no_proxy_bypasses(no_proxy: str, host: str) -> bool:
    """apt's http method (methods/basehttp.cc: CheckDomainList): a no_proxy entry matches a
    host that ends with it; no CIDRs. curl before 7.86 likewise (Ubuntu 22.04 has 7.81)."""
    return any(e and host.endswith(e) for e in no_proxy.split(","))


def test_the_bake_s_no_proxy_names_a_mirror_address_its_cidr_covers(renders):
    from test_packer import variables_of

    from hclspec import check_packer_dir, value

    def by_address(spec):
        spec["mirrors"]["apt"] = "http://10.1.2.3/ubuntu"
        spec["mirrors"]["downloads"] = "https://10.9.8.7:8443/github"
        spec["proxy"]["noProxy"] = ["10.0.0.0/8", ".corp.example.com"]
    pdir = renders.text(site_text(by_address)) / "packer"
    merged, errors = check_packer_dir(pdir)
    assert errors == []
    no_proxy = value(variables_of(merged)["no_proxy"]["default"])
    for host in ("10.1.2.3", "10.9.8.7", "apt.corp.example.com"):
        assert _apt_no_proxy_bypasses(no_proxy, host), (host, no_proxy)
    assert not _apt_no_proxy_bypasses(no_proxy, "archive.ubuntu.com")


# --- debian-installer reaches an https mirror through the https proxy -------------------------

def test_the_preseed_takes_the_proxy_of_its_mirror_s_protocol(renders, tmp_path):
    from test_packer import FAKE_HASH, _debconf_check, local_values, templatefile

    from hclspec import check_packer_dir

    def debian(scheme, proxy):
        def mutate(spec):
            spec["os"] = "debian-12"
            spec["mirrors"]["apt"] = f"{scheme}://apt.corp.example.com/debian"
            spec["proxy"] = {"https": "http://secure-proxy.corp.example.com:3129", **proxy}
        return mutate
    for scheme, proxy, var in (("https", {}, "https_proxy"),
                               ("http", {"http": "http://proxy.corp.example.com:3128"}, "http_proxy")):
        pdir = renders.text(site_text(debian(scheme, proxy))) / "packer"
        merged, errors = check_packer_dir(pdir)
        assert errors == []
        variables = {"http_proxy": proxy.get("http", ""), "https_proxy": "http://secure-proxy.corp.example.com:3129"}
        loc = local_values(merged)
        (seed,) = (loc.get("cd_content") or loc["http_content"]).values()  # the CD's, or served
        assert f"proxy = var.{var}" in seed, seed
        rendered = tmp_path / f"{scheme}.cfg"
        rendered.write_text(templatefile((pdir / "installer" / "preseed.cfg.pkrtpl").read_text(), build_user="packer",
                                         password_hash=FAKE_HASH, proxy=variables[var]))
        r = _debconf_check(rendered)
        assert r.returncode == 0 and r.stderr == "", r.stderr
        assert f"d-i mirror/{scheme}/proxy string {variables[var]}\n" in rendered.read_text()
        assert variables[var]  # the installer goes through a proxy


# --- the rehearsal's dpkg-query stand-in keeps dpkg-query's contract --------------------------

def test_the_dpkg_query_stand_in_reports_unknown_packages_and_fields(tmp_path):
    import os
    import sys

    sys.path.insert(0, str(ROOT / "tests" / "standins"))
    try:
        from standins import dpkg_query
    finally:
        sys.path.pop(0)
    fmt = "${Package} ${Version} ${db:Status-Abbrev}\n"
    out, err, rc = dpkg_query.show(fmt, ["open-iscsi", "nfs-common"], {"open-iscsi": "2.1.9-3ubuntu5"})
    assert (out, rc) == ("open-iscsi 2.1.9-3ubuntu5 ii \n", 1)
    assert err == "dpkg-query: no packages found matching nfs-common\n"
    script = ROOT / "tests" / "standins" / "dpkg_query.py"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests" / "standins")}
    for args in (["-l", "x"], ["-W", "-f=${Status}", "x"]):
        r = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, env=env)
        assert r.returncode == 2 and "stand-in dpkg-query" in r.stderr, (args, r.stderr)


# --- nothing of the bake's proxy stays in snapd's drop-in that subiquity writes ----------------

def test_the_seal_removes_subiquity_s_snapd_proxy_drop_in(renders, tmp_path):
    from test_packer import _shell_function

    seal = renders.text(site_text(lambda s: None)) / "packer" / "scripts" / "90-seal.sh"
    root = tmp_path / "root"
    # what subiquity writes into the target for `proxy:` (ProxyModel.proxy_systemd_dropin)
    dropin = root / "etc/systemd/system/snapd.service.d/snap_proxy.conf"
    dropin.parent.mkdir(parents=True)
    dropin.write_text('[Service]\nEnvironment="HTTP_PROXY=http://proxy.corp.example.com:3128" '
                      '"HTTPS_PROXY=http://proxy.corp.example.com:3128"\n')
    r = subprocess.run(["bash", "-c", "set -euo pipefail\n" + _shell_function(seal, "remove_bake_proxy")
                        + 'remove_bake_proxy "$1"\n', "x", str(root)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    leftovers = [p for p in root.rglob("*") if p.is_file() and "proxy.corp.example.com" in p.read_text()]
    assert leftovers == []


# --- eviction thresholds the kubelet refuses to start with -----------------------------------

def test_eviction_thresholds_are_checked_as_the_kubelet_parses_them(tmp_path):
    def kubelet(value):
        return lambda s: s["kubernetes"].update(kubelet=value)

    bad = [{"evictionHard": {"memory.available": "lots"}},
           {"evictionHard": {"memory.avail": "100Mi"}},
           {"evictionHard": {"nodefs.available": "120%"}},
           {"evictionHard": {"nodefs.available": "-1Gi"}},
           {"evictionMinimumReclaim": {"imagefs.available": "x%"}},
           {"evictionSoft": {"memory.available": "500Mi"}},
           {"evictionSoft": {"memory.available": "500Mi"}, "evictionSoftGracePeriod": {"memory.available": "soon"}}]
    for value in bad:
        found = _validate(tmp_path, kubelet(value))
        assert [(c, sev) for c, sev, _ in found] == [("kubelet-field", "error")], (value, found)
    good = [{"evictionHard": {"memory.available": "200Mi", "nodefs.available": "10%", "imagefs.inodesFree": "5%",
                              "pid.available": "0%", "containerfs.available": "1.5Gi"}},
            {"evictionSoft": {"memory.available": "500Mi"}, "evictionSoftGracePeriod": {"memory.available": "1m30s"},
             "evictionMinimumReclaim": {"memory.available": "0Mi", "nodefs.available": "500Mi"}}]
    for value in good:
        assert _validate(tmp_path, kubelet(value)) == [], value


# --- a site file where a folder must be fails validation, not the render ------------------------

def test_files_that_would_be_folders_are_refused_and_the_rest_render(tmp_path, renders):
    cases = [[{"path": "/etc/corp/a/b", "content": "x"}, {"path": "/etc/corp/a", "content": "y"}],
             [{"path": "/etc/containerd", "content": "x"}], [{"path": "/usr/local/share/ca-certificates", "content": "x"}],
             [{"path": "/opt", "content": "x"}],
             [{"path": "/etc/containerd/certs.d/quay.io", "content": "x"}]]  # the mirror's folder
    for files in cases:
        found = _validate(tmp_path, lambda s, f=files: s["image"].update(files=f))
        assert [(c, sev) for c, sev, _ in found] == [("image-file", "error")], (files, found)
    ok = [{"path": "/etc/corp/a/b", "content": "x"}, {"path": "/etc/corp/ab", "content": "y"}]
    assert _validate(tmp_path, lambda s: s["image"].update(files=ok)) == []
    out = renders.text(site_text(lambda s: s["image"].update(files=ok)))
    assert (out / "packer" / "files" / "etc" / "corp" / "ab").read_text() == "y"


# --- the node check finds extra images pulled as docker.io/x:tag or by digest ------------------

def test_the_node_check_finds_docker_hub_short_names_and_digest_pins():
    import json

    from bakery.guest import nodecheck as nc

    digest = "sha256:" + "ab" * 32
    # `crictl images -o json` after `crictl pull` of each (the CRI's normalized names)
    listing = json.dumps({"images": [
        {"id": "sha256:1", "repoTags": ["docker.io/library/nginx:1.27"], "repoDigests": [f"docker.io/library/nginx@{digest}"]},
        {"id": "sha256:2", "repoTags": [], "repoDigests": [f"registry.corp.example.com/team/agent@{digest}"]},
        {"id": "sha256:3", "repoTags": [], "repoDigests": [f"quay.io/org/tool@{digest}"]}]})
    have = {nc.normalize_image(t) for t in nc.parse_crictl_images(listing)}
    for want in ("docker.io/nginx:1.27", "nginx:1.27", "library/nginx:1.27", "docker.io/library/nginx:1.27",
                 f"registry.corp.example.com/team/agent@{digest}", f"quay.io/org/tool:2.0@{digest}",
                 f"registry.corp.example.com:5000/team/agent:1@{digest}".replace(":5000", "")):
        assert nc.normalize_image(want) in have, want
    assert nc.normalize_image("docker.io/nginx:1.28") not in have
    assert nc.normalize_image("registry.corp.example.com:5000/x:1") == "registry.corp.example.com:5000/x:1"


# --- the order of the extra packages is no input of the image's name ---------------------------

def test_reordering_extra_packages_keeps_the_image_name(tmp_path):
    from bakery.plan import image_plan
    from bakery.spec import pipeline

    names = []
    for i, order in enumerate((["nfs-common", "open-iscsi=2.1.9-3ubuntu5", "jq"],
                               ["jq", "open-iscsi=2.1.9-3ubuntu5", "nfs-common"])):
        p = tmp_path / f"c{i}.yaml"
        p.write_text(site_text(lambda s, o=order: s["image"].update(extraPackages=o)))
        names.append(image_plan(pipeline.load_cluster(str(p))[0]).image_name)
    assert names[0] == names[1]
    p = tmp_path / "c2.yaml"
    p.write_text(site_text(lambda s: s["image"].update(extraPackages=["nfs-common", "jq"])))
    assert image_plan(pipeline.load_cluster(str(p))[0]).image_name != names[0]
