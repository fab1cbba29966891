"""The image half of issue 18 (a site behind a proxy, with mirrors, a private CA and its own
packages, files and commands), checked where each consumer reads it: shellcheck and bash for
the bake scripts, the plugins' HCL2 specs, subiquity's autoinstall schema, debconf for the
preseed, update-ca-certificates and openssl for the CAs, containerd's hosts.toml fields
(core/remotes/docker/config/hosts.go) and containerd itself where it runs."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import tomllib
from pathlib import Path

import pytest
import yaml
from test_packer import (
    FAKE_HASH,
    SCRIPT_ORDER,
    SPECS,
    _debconf_check,
    _script_commands,
    _shell_function,
    local_values,
    provisioners_of,
    templatefile,
    variables_of,
)

from bakery.guest import nodecheck as nc

from conftest import EXAMPLES, need
from hclspec import check_packer_dir, labelled, value

ENTERPRISE = EXAMPLES / "enterprise" / "cluster.yaml"
PROXY = "http://proxy.corp.example.com:3128"
DOWNLOADS = "https://artifacts.corp.example.com/github"
K8S_MIRROR = "https://artifacts.corp.example.com/pkgs-k8s"
APT_MIRROR = "http://apt.corp.example.com/ubuntu"


def site_text(mutate=None) -> str:
    """The enterprise example, changed by mutate(spec)."""
    data = yaml.safe_load(ENTERPRISE.read_text())
    if mutate:
        mutate(data["spec"])
    return yaml.safe_dump(data, sort_keys=False)


def _debian(spec):
    spec["os"] = "debian-12"
    spec["mirrors"]["apt"] = "https://apt.corp.example.com/debian/"


def _dl(spec):
    spec["kubernetes"]["packageSource"] = "dl.k8s.io"


def _jammy(spec):
    spec["os"] = "ubuntu-22.04"


def _bare(spec):
    for key in ("proxy", "mirrors", "trust", "ntp", "firstBoot"):
        spec.pop(key, None)
    for key in ("extraPackages", "extraImages", "files", "commands"):
        spec["image"].pop(key, None)


VARIANTS = {"enterprise": None, "debian-12": _debian, "dl.k8s.io": _dl, "ubuntu-22.04": _jammy, "bare": _bare}


@pytest.fixture(scope="session")
def site(renders):
    return lambda name="enterprise": renders.text(site_text(VARIANTS[name])) / "packer"


def plan_of(tmp_path, mutate=None):
    from bakery.plan import image_plan
    from bakery.spec import pipeline

    p = tmp_path / f"c{len(list(tmp_path.iterdir()))}.yaml"
    p.write_text(site_text(mutate))
    cluster, _ = pipeline.load_cluster(str(p))
    return image_plan(cluster)


def commands_in_order(pdir: Path) -> list[tuple[str, list[str]]]:
    """(script, words) of every simple command of the bake, in the order the scripts run."""
    return [(name, words) for name in SCRIPT_ORDER for words in _script_commands(pdir / "scripts" / f"{name}.sh")]


# --- the scripts ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(VARIANTS))
def test_scripts_pass_shellcheck(site, name):
    scripts = sorted((site(name) / "scripts").glob("*.sh"))
    assert [p.stem for p in scripts] == SCRIPT_ORDER
    r = subprocess.run([need("shellcheck"), "--shell=bash", "--severity=style", *map(str, scripts)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def _downloads(words: list[str]) -> bool:
    """Whether a command downloads: apt, curl (through fetch/fetch_verified) or an image pull."""
    text = " ".join(words)
    return (words[:2] in (["apt_get", "update"], ["apt_get", "install"])
            or bool(re.search(r"(^|[=(])\s*(fetch|fetch_verified|curl)\b", text))
            or "images pull" in text or words[-2:-1] == ["pull"] or " pull " in f" {text} ")


@pytest.mark.parametrize("name", ["enterprise", "debian-12", "dl.k8s.io"])
def test_the_site_ca_is_trusted_before_the_first_download(site, name):
    cmds = commands_in_order(site(name))
    first_download = next(i for i, (_, w) in enumerate(cmds) if _downloads(w))
    trust = next(i for i, (_, w) in enumerate(cmds) if w == ["update-ca-certificates"])
    installs = [i for i, (_, w) in enumerate(cmds)
                if w[:2] == ["install", "-D"] and w[-1].startswith("/usr/local/share/ca-certificates/")]
    assert cmds[trust][0] == "05-prepare" and installs and max(installs) < trust < first_download
    # every command before it is local: nothing in 05-prepare before the CA touches the network
    assert not any(_downloads(w) for _, w in cmds[:trust])


def test_the_download_detector_is_a_real_judge():
    assert _downloads(["apt_get", "update"]) and _downloads(["tarball=$(fetch_verified", "u", "s)"])
    assert _downloads(["crictl", "--runtime-endpoint", "$SOCKET", "pull", "$image"])
    assert not _downloads(["update-ca-certificates"]) and not _downloads(["install", "-D", "a", "b"])


def _pem_files(pdir: Path) -> list[Path]:
    return sorted((pdir / "files/usr/local/share/ca-certificates").glob("bakery-site-*.crt"))


def test_site_cas_parse_and_the_node_check_expects_their_der(site):
    pdir = site()
    pems = _pem_files(pdir)
    assert [p.name for p in pems] == ["bakery-site-1.crt"]
    exp = json.loads((pdir / "files/opt/bakery/node-check.json").read_text())
    for pem, want in zip(pems, exp["caCertificates"], strict=True):
        der = subprocess.run([need("openssl"), "x509", "-in", str(pem), "-outform", "DER"], capture_output=True,
                             check=True).stdout
        import hashlib
        assert want == {"file": "/" + str(pem.relative_to(pdir / "files")), "sha256": hashlib.sha256(der).hexdigest()}
    assert exp["caBundle"] == "/etc/ssl/certs/ca-certificates.crt"


def test_update_ca_certificates_puts_the_site_ca_in_the_bundle_the_node_check_reads(site, tmp_path):
    """The real update-ca-certificates, in a private mount namespace over temporary folders,
    run on the rendered CA file: the bundle it writes holds the certificate, as the node
    check reads it; without the file it does not."""
    tool, unshare = need("update-ca-certificates"), need("unshare")
    pdir = site()
    exp = json.loads((pdir / "files/opt/bakery/node-check.json").read_text())

    def bundle_with(files: list[Path]) -> str:
        work = tmp_path / f"w{len(list(tmp_path.iterdir()))}"
        local, certs = work / "local", work / "certs"
        local.mkdir(parents=True)
        certs.mkdir()
        for f in files:
            shutil.copy(f, local / f.name)
        prog = (f"mount --bind {local} /usr/local/share/ca-certificates && mount --bind {certs} /etc/ssl/certs && "
                f"{tool} --fresh >/dev/null && cat /etc/ssl/certs/ca-certificates.crt")
        r = subprocess.run([unshare, "--mount", "--propagation", "private", "sh", "-c", prog], capture_output=True,
                           text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot run update-ca-certificates in a mount namespace here: {r.stderr.strip()}")
        return r.stdout

    have = nc.parse_pem_bundle(bundle_with(_pem_files(pdir)))
    assert {c["sha256"] for c in exp["caCertificates"]} <= have
    assert not {c["sha256"] for c in exp["caCertificates"]} & nc.parse_pem_bundle(bundle_with([]))


def test_bake_proxy_reaches_every_script_and_defaults_from_the_spec(site):
    pdir = site()
    merged, errors = check_packer_dir(pdir)
    assert errors == []
    variables = variables_of(merged)
    assert value(variables["http_proxy"]["default"]) == PROXY
    assert value(variables["https_proxy"]["default"]) == PROXY
    no_proxy = value(variables["no_proxy"]["default"]).split(",")
    assert no_proxy[:3] == ["localhost", "127.0.0.1", "::1"] and {".corp.example.com", "10.0.0.0/8"} <= set(no_proxy)
    want = {f"{n}=${{var.{n.lower()}}}" for v in ("http_proxy", "https_proxy", "no_proxy") for n in (v, v.upper())}
    scripts = [b for t, b in provisioners_of(merged) if t == "shell" and "script" in b]
    assert [value(b["name"]) for b in scripts] == SCRIPT_ORDER
    for b in scripts:
        env = {json.loads(e) for e in _hcl_list(b["environment_vars"])}
        assert want <= env, value(b["name"])
    # without spec.proxy the variables are empty (PKR_VAR_http_proxy can still set them)
    bare = variables_of(check_packer_dir(site("bare"))[0])
    assert [value(bare[v]["default"]) for v in ("http_proxy", "https_proxy", "no_proxy")] == ["", "", ""]


def _hcl_list(raw) -> list[str]:
    """python-hcl2 gives a list of quoted strings (interpolations kept as written)."""
    return raw if isinstance(raw, list) else json.loads(raw)


def test_every_script_unsets_an_empty_proxy(site, tmp_path):
    """bash runs a script's header with the variables as Packer passes them: empty ones go."""
    header = (site() / "scripts" / "10-swap.sh").read_text().split("# The kubelet refuses")[0]
    prog = header + 'env | grep -i _proxy= | sort\n'
    env = {"PATH": "/usr/bin:/bin", "HTTP_PROXY": PROXY, "http_proxy": PROXY, "HTTPS_PROXY": "", "https_proxy": "",
           "NO_PROXY": "localhost", "no_proxy": "localhost"}
    r = subprocess.run(["bash", "-c", prog], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == sorted([f"HTTP_PROXY={PROXY}", "NO_PROXY=localhost", f"http_proxy={PROXY}",
                                       "no_proxy=localhost"])


def test_containerd_gets_the_bake_proxy_and_the_seal_removes_it(site, tmp_path):
    """30-containerd's drop-in writer and 90-seal's remover, run by bash on a fake root."""
    pdir = site()
    containerd = (pdir / "scripts" / "30-containerd.sh").read_text()
    dropin_line = next(ln for ln in containerd.splitlines() if ln.startswith("readonly BAKE_PROXY_DROPIN="))
    dropin = dropin_line.split("=", 1)[1]
    root = tmp_path / "root"
    (root / "etc/apt/apt.conf.d").mkdir(parents=True)
    write = (f"set -euo pipefail\nreadonly BAKE_PROXY_DROPIN={root}{dropin}\n"
             + _shell_function(pdir / "scripts" / "30-containerd.sh", "write_bake_proxy_dropin")
             + "write_bake_proxy_dropin\n")
    env = {"PATH": "/usr/bin:/bin", "HTTP_PROXY": PROXY, "HTTPS_PROXY": "http://p.example:3128/a%20b",
           "NO_PROXY": "localhost,.corp.example.com"}
    r = subprocess.run(["bash", "-c", write], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    unit = (root / dropin.lstrip("/")).read_text()
    assert unit.splitlines() == ["[Service]", f'Environment="HTTP_PROXY={PROXY}"',
                                 'Environment="HTTPS_PROXY=http://p.example:3128/a%%20b"',  # systemd's %% is %
                                 'Environment="NO_PROXY=localhost,.corp.example.com"']
    systemd_analyze = shutil.which("systemd-analyze")
    if systemd_analyze:
        svc = tmp_path / "units" / "x.service"
        svc.parent.mkdir()
        svc.write_text("[Service]\nType=oneshot\nExecStart=/bin/true\n" + unit.split("\n", 1)[1])
        r = subprocess.run([systemd_analyze, "verify", str(svc)], capture_output=True, text=True)
        assert "Environment" not in r.stderr, r.stderr
    bad = subprocess.run(["bash", "-c", write], env={**env, "HTTP_PROXY": 'http://a"b'}, capture_output=True,
                         text=True)
    assert bad.returncode != 0 and "HTTP_PROXY" in bad.stderr
    # what the installers left: d-i's apt.conf line, curtin's proxy file; and a site file
    (root / "etc/apt/apt.conf").write_text(f'Acquire::http::Proxy "{PROXY}";\nAPT::Get::Assume-Yes "true";\n')
    (root / "etc/apt/apt.conf.d/90curtin-aptproxy").write_text(
        f'Acquire::http::Proxy "{PROXY}";\nAcquire::https::Proxy "{PROXY}";\n')
    (root / "etc/apt/apt.conf.d/99corp-proxy").write_text(f'Acquire::http::Proxy "{PROXY}";\n')
    seal = pdir / "scripts" / "90-seal.sh"
    r = subprocess.run(["bash", "-c", "set -euo pipefail\n" + _shell_function(seal, "remove_bake_proxy")
                        + 'remove_bake_proxy "$1"\n', "x", str(root)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert not (root / dropin.lstrip("/")).exists() and not (root / dropin.lstrip("/")).parent.exists()
    assert not (root / "etc/apt/apt.conf.d/90curtin-aptproxy").exists()
    assert (root / "etc/apt/apt.conf").read_text() == 'APT::Get::Assume-Yes "true";\n'
    assert PROXY in (root / "etc/apt/apt.conf.d/99corp-proxy").read_text(), "a site's own file is not the bake's"
    assert "remove_bake_proxy /" in seal.read_text()


# --- the installers --------------------------------------------------------------------------

@pytest.mark.parametrize("name,schema", [("ubuntu-22.04", "subiquity-autoinstall-22.04.2.json"),
                                         ("enterprise", "subiquity-autoinstall-24.04.4.1.json")])
@pytest.mark.parametrize("proxy", [json.dumps(PROXY), "null"])
def test_autoinstall_proxy_and_apt_mirror_valid_for_subiquity(site, name, schema, proxy):
    import jsonschema

    pdir = site(name)
    cd = local_values(check_packer_dir(pdir)[0])["cd_content"]
    # the installer's proxy is the bake's, as a JSON value (a URL or null)
    assert "proxy = jsonencode(" in cd['"user-data"'] and "var.http_proxy" in cd['"user-data"']
    text = templatefile((pdir / "installer" / "user-data.pkrtpl").read_text(), build_user="packer",
                        password_hash=FAKE_HASH, proxy=proxy)
    doc = yaml.safe_load(text)["autoinstall"]
    validator = jsonschema.Draft7Validator(json.loads((SPECS / schema).read_text())["schema"],
                                           format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    assert [e.message for e in validator.iter_errors(doc)] == []
    assert doc["proxy"] == json.loads(proxy)
    assert doc["apt"]["primary"] == [{"arches": ["default"], "uri": APT_MIRROR}]
    assert doc["apt"]["security"] == doc["apt"]["primary"] and doc["apt"]["geoip"] is False
    assert ("fallback" in doc["apt"]) == (name == "enterprise")
    # the judge is real: a proxy that is not a string or null fails (the schema's `uri`
    # format is checked only where rfc3987 is installed)
    assert list(validator.iter_errors({**doc, "proxy": 3128}))
    assert list(validator.iter_errors({**doc, "apt": {**doc["apt"], "primary": {"uri": APT_MIRROR}}}))


def test_debian_preseed_mirror_proxy_and_ca_certificates(site, tmp_path):
    pdir = site("debian-12")
    rendered = tmp_path / "preseed.cfg"
    rendered.write_text(templatefile((pdir / "installer" / "preseed.cfg.pkrtpl").read_text(), build_user="packer",
                                     password_hash=FAKE_HASH, proxy=PROXY))
    r = _debconf_check(rendered)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    answers = {}
    for line in rendered.read_text().splitlines():
        if line and not line.startswith("#"):
            _, question, qtype, *rest = line.split(None, 3)
            answers[question] = (qtype, rest[0] if rest else "")
    assert answers["mirror/protocol"] == ("string", "https")
    assert answers["mirror/https/hostname"] == ("string", "apt.corp.example.com")
    assert answers["mirror/https/directory"] == ("string", "/debian")
    assert answers["mirror/https/proxy"] == ("string", PROXY)
    assert "ca-certificates" in answers["pkgsel/include"][1].split()
    loc = local_values(check_packer_dir(pdir)[0])
    (seed,) = (loc.get("cd_content") or loc["http_content"]).values()  # the CD's, or served
    assert "proxy = var.https_proxy" in seed  # the https mirror's proxy


# --- mirrors ------------------------------------------------------------------------------

URL = re.compile(r"https?://[^\s'\"]+")


def _urls(pdir: Path) -> list[str]:
    return [u for p in sorted((pdir / "scripts").glob("*.sh")) for u in URL.findall(p.read_text())]


@pytest.mark.parametrize("name", ["enterprise", "dl.k8s.io"])
def test_mirrors_rewrite_every_download(site, name):
    pdir = site(name)
    urls = _urls(pdir)
    assert urls
    assert [u for u in urls if not u.startswith((DOWNLOADS + "/", K8S_MIRROR + "/"))] == []
    text = "".join(p.read_text() for p in (pdir / "scripts").glob("*.sh"))
    for upstream in ("github.com", "raw.githubusercontent.com", "pkgs.k8s.io", "dl.k8s.io"):
        # as a host of a URL, with or without its scheme (the package source's name may be said)
        assert not re.search(rf"(^|[^\w.-]){re.escape(upstream)}(/|:\d)", text, re.M), upstream
    images = (pdir / "scripts" / "50-images.sh").read_text()
    assert f"{DOWNLOADS}/projectcalico/calico/raw/v3.32.1/manifests/tigera-operator.yaml" in images
    k8s = (pdir / "scripts" / "40-kubernetes.sh").read_text()
    if name == "enterprise":
        assert f"readonly REPO={K8S_MIRROR}/core:/stable:/v1.36/deb/\n" in k8s
    else:
        assert f"{K8S_MIRROR}/release/v1.36.3/bin/linux/amd64/kubeadm.sha256" in k8s
    containerd = (pdir / "scripts" / "30-containerd.sh").read_text()
    assert (f"{DOWNLOADS}/containerd/containerd/releases/download/v2.2.7/containerd-2.2.7-linux-amd64.tar.gz"
            in containerd)


def test_without_mirrors_the_upstreams_stay(site):
    urls = _urls(site("bare"))
    hosts = {re.match(r"https?://([^/]+)/", u).group(1) for u in urls}
    assert hosts == {"github.com", "pkgs.k8s.io", "raw.githubusercontent.com"}


def test_download_url_rules():
    from bakery.plan.mirrors import download_url
    from bakery.spec.model import Mirrors

    m = Mirrors(None, "https://k.example/k8s/", "https://d.example/gh", ())
    assert download_url("https://github.com/o/r/releases/download/v1/f", m) == "https://d.example/gh/o/r/releases/download/v1/f"
    assert download_url("https://raw.githubusercontent.com/o/r/v1/a/b.yaml", m) == "https://d.example/gh/o/r/raw/v1/a/b.yaml"
    assert download_url("https://pkgs.k8s.io/core:/stable:/v1.36/deb/", m) == "https://k.example/k8s/core:/stable:/v1.36/deb/"
    assert download_url("https://dl.k8s.io/release/v1.36.3/bin/linux/amd64/kubelet", m) == (
        "https://k.example/k8s/release/v1.36.3/bin/linux/amd64/kubelet")
    assert download_url("https://example.org/x", m) == "https://example.org/x"
    assert download_url("https://github.com/o/r", Mirrors(None, None, None, ())) == "https://github.com/o/r"


# Every key containerd decodes from a hosts.toml (core/remotes/docker/config/hosts.go at
# containerd main, commit 00774fef8d2b34711b5a43fcf639650191adfb05: hostFileConfig's toml tags
# plus `server` and the `host` table in parseHostsFile), and the capability words
# parseHostConfig accepts. containerd decodes non-strictly and, on a decode error, silently
# falls back to certificate files: a misspelt key or a bad file would quietly bypass the mirror.
HOSTS_TOML_KEYS = {"capabilities", "ca", "client", "skip_verify", "header", "override_path", "dial_timeout"}
HOSTS_TOML_TOP = HOSTS_TOML_KEYS | {"server", "host"}
CAPABILITIES = {"pull", "resolve", "push"}


def _hosts_files(pdir: Path) -> dict[str, dict]:
    root = pdir / "files/etc/containerd/certs.d"
    return {p.parent.name: tomllib.loads(p.read_text()) for p in sorted(root.glob("*/hosts.toml"))}


def test_hosts_toml_for_every_registry_mirror(site):
    pdir = site()
    spec = yaml.safe_load(ENTERPRISE.read_text())["spec"]
    files = _hosts_files(pdir)
    assert set(files) == set(spec["mirrors"]["registries"])
    for registry, doc in files.items():
        assert set(doc) <= HOSTS_TOML_TOP
        assert doc["server"] == ("https://registry-1.docker.io" if registry == "docker.io" else f"https://{registry}")
        (mirror, host), = doc["host"].items()
        assert mirror == spec["mirrors"]["registries"][registry]
        assert set(host) <= HOSTS_TOML_KEYS
        assert host["capabilities"] == ["pull", "resolve"] and set(host["capabilities"]) <= CAPABILITIES
        # the mirror's path (/v2/<registry>) is its API root: without override_path containerd
        # would append /v2 (parseHostConfig)
        assert host["override_path"] is True
    exp = json.loads((pdir / "files/opt/bakery/node-check.json").read_text())
    assert exp["registryHosts"] == [f"/etc/containerd/certs.d/{r}/hosts.toml" for r in sorted(files)]
    # baked by 30-containerd, before containerd starts and before any image is pulled
    installed = [w[-1] for s, w in commands_in_order(pdir) if s == "30-containerd" and w[:2] == ["install", "-D"]]
    assert set(exp["registryHosts"]) <= set(installed)
    assert not _hosts_files(site("bare"))


def test_override_path_rule():
    from bakery.plan.mirrors import overrides_path

    assert overrides_path("https://h/v2/registry.k8s.io") is True
    assert overrides_path("https://h/v2/") is False and overrides_path("https://h/v2") is False
    assert overrides_path("https://h") is False and overrides_path("https://h/nexus/docker") is False


@pytest.mark.parametrize("name", ["containerd-1.7", "ubuntu-24.04", "containerd-2.3"])
def test_every_containerd_config_reads_certs_d(renders, name):
    from test_packer import VARIANTS as PV
    from test_packer import variant_text

    cfg = tomllib.loads((renders.text(variant_text(**PV[name])) / "packer/files/etc/containerd/config.toml")
                        .read_text())
    cri = (cfg["plugins"]["io.containerd.grpc.v1.cri"] if cfg["version"] == 2
           else cfg["plugins"]["io.containerd.cri.v1.images"])
    assert cri["registry"]["config_path"] == "/etc/containerd/certs.d"


# --- the site's step ----------------------------------------------------------------------------

def test_site_step_packages_files_and_commands(site):
    pdir = site()
    cmds = [w for s, w in commands_in_order(pdir) if s == "60-site"]
    install = next(w for w in cmds if w[:2] == ["apt_get", "install"])
    assert install[-2:] == ["nfs-common", "open-iscsi=2.1.9-3ubuntu5"]
    assert [w for w in cmds if w[:1] == ["apt-mark"]] == [["apt-mark", "hold", "open-iscsi", ">/dev/null"]]
    assert ["install", "-D", "-m", "0644", "/tmp/bakery/files/etc/corp/site.conf", "/etc/corp/site.conf"] in cmds
    assert (pdir / "files/etc/corp/site.conf").read_text() == "site=corp\nregion=eu-1\n"
    assert ["run_site_command", "0", "systemctl enable iscsid"] in cmds
    order = [s for s, _ in commands_in_order(pdir)]
    assert order.index("60-site") > order.index("50-images") and order.index("60-site") < order.index("80-node-check")


def test_a_failing_site_command_stops_the_bake_with_its_index_and_text(site, tmp_path):
    script = site() / "scripts" / "60-site.sh"
    prog = ("set -euo pipefail\nlog() { printf '%s\\n' \"$*\"; }\n" + _shell_function(script, "run_site_command")
            + "run_site_command 0 'echo one >>\"$OUT\"'\nrun_site_command 1 'exit 3'\n"
              "run_site_command 2 'echo never >>\"$OUT\"'\n")
    out = tmp_path / "out"
    r = subprocess.run(["bash", "-c", prog], env={"PATH": "/usr/bin:/bin", "OUT": str(out)}, capture_output=True,
                       text=True)
    assert r.returncode == 1
    assert "spec.image.commands[1] failed (exit status 3): exit 3" in r.stderr
    assert "spec.image.commands[0]: echo one" in r.stdout
    assert out.read_text() == "one\n"


def test_site_file_modes_and_extra_images(site, tmp_path):
    def mutate(spec):
        spec["image"]["files"].append({"path": "/usr/local/bin/corp-tool", "content": "#!/bin/sh\n", "mode": "750"})
    out = site_text(mutate)
    from conftest import render_here
    src = tmp_path / "c.yaml"
    src.write_text(out)
    pdir = render_here(src, tmp_path / "out") / "packer"
    cmds = [w for s, w in commands_in_order(pdir) if s == "60-site"]
    assert ["install", "-D", "-m", "0750", "/tmp/bakery/files/usr/local/bin/corp-tool", "/usr/local/bin/corp-tool"] in cmds
    exp = json.loads((pdir / "files/opt/bakery/node-check.json").read_text())
    assert "registry.corp.example.com/platform/node-agent:1.4.2" in exp["images"]
    images = (pdir / "scripts/50-images.sh").read_text()
    assert "  registry.corp.example.com/platform/node-agent:1.4.2\n" in images
    assert exp["extraPackages"] == [{"name": "nfs-common", "version": None},
                                    {"name": "open-iscsi", "version": "2.1.9-3ubuntu5"}]


def test_timesyncd_is_baked_where_cloud_init_looks(site):
    pdir = site()
    install = next(w for s, w in commands_in_order(pdir) if s == "05-prepare" and w[:2] == ["apt_get", "install"])
    assert "systemd-timesyncd" in install
    # cloud-init's check_exe for systemd-timesyncd (cloudinit/config/cc_ntp.py, NTP_CLIENT_CONFIG)
    exp = json.loads((pdir / "files/opt/bakery/node-check.json").read_text())
    assert exp["timeDaemon"] == {"package": "systemd-timesyncd", "file": "/lib/systemd/systemd-timesyncd"}


# --- fingerprint --------------------------------------------------------------------------------

def test_fingerprint_follows_what_changes_image_bytes(tmp_path):
    base = plan_of(tmp_path)
    assert plan_of(tmp_path).fingerprint == base.fingerprint

    def proxy(spec):
        spec["proxy"] = {"http": "http://other-proxy:8080", "noProxy": [".example.org"]}

    def no_proxy(spec):
        spec.pop("proxy")

    def downloads(spec):
        spec["mirrors"]["downloads"] = "https://elsewhere.example.com/gh"

    assert [plan_of(tmp_path, m).fingerprint == base.fingerprint for m in (proxy, no_proxy, downloads)] == [True] * 3

    def dl_mirror(spec):
        spec["mirrors"]["kubernetes"] = "https://k8s2.example.com"  # serves only verified binaries
    assert plan_of(tmp_path, _dl).fingerprint == plan_of(tmp_path, lambda s: (_dl(s), dl_mirror(s))).fingerprint

    def ca(spec):
        spec["trust"]["caCertificates"] = []

    def pkg(spec):
        spec["image"]["extraPackages"] = ["nfs-common"]

    def files(spec):
        spec["image"]["files"][0]["mode"] = "0600"

    def registries(spec):
        spec["mirrors"]["registries"]["quay.io"] = "https://quay-mirror.example.com"

    def apt(spec):
        spec["mirrors"]["apt"] = "http://apt2.example.com/ubuntu"

    def k8s(spec):
        spec["mirrors"]["kubernetes"] = "https://k8s2.example.com"

    def commands(spec):
        spec["image"]["commands"].append("true")

    def images(spec):
        spec["image"]["extraImages"] = []

    changed = {m.__name__: plan_of(tmp_path, m).fingerprint for m in (ca, pkg, files, registries, apt, k8s, commands,
                                                                      images)}
    assert [n for n, f in changed.items() if f == base.fingerprint] == []
    assert len(set(changed.values())) == len(changed)


# --- the node check, end to end on a fake node ------------------------------------------------

class FakeNode(nc.System):
    def __init__(self, root, table):
        super().__init__(str(root))
        self.table = table

    def run(self, *argv, timeout=30):
        for key, answer in self.table.items():
            if argv[:len(key)] == key:
                return answer
        return None


def test_node_check_site_verdicts(site, tmp_path):
    pdir = site()
    exp = json.loads((pdir / "files/opt/bakery/node-check.json").read_text())
    root = tmp_path / "root"
    bundle = root / exp["caBundle"].lstrip("/")
    bundle.parent.mkdir(parents=True)
    bundle.write_text("".join(p.read_text() for p in _pem_files(pdir)))
    for path in [*exp["registryHosts"], exp["timeDaemon"]["file"]]:
        (root / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (root / path.lstrip("/")).write_text("")
    dpkg = "nfs-common 1:2.6.4-3ubuntu5 ii \nopen-iscsi 2.1.9-3ubuntu5 ii \n"
    table = {("dpkg-query",): (0, dpkg), ("apt-mark", "showhold"): (0, "kubeadm\nopen-iscsi\n")}
    good = {r.name: r for r in nc.check_site(FakeNode(root, table), exp)}
    assert {n: r.ok for n, r in good.items()} == {"site-ca": True, "site-packages": True, "registry-mirrors": True,
                                                  "time-daemon": True}
    bad_table = {("dpkg-query",): (1, "open-iscsi 2.1.9-3ubuntu4 ii \n"), ("apt-mark", "showhold"): (0, "")}
    bundle.write_text("")
    (root / exp["timeDaemon"]["file"].lstrip("/")).unlink()
    (root / exp["registryHosts"][0].lstrip("/")).unlink()
    bad = {r.name: r for r in nc.check_site(FakeNode(root, bad_table), exp)}
    assert not any(r.ok for r in bad.values())
    assert "/usr/local/share/ca-certificates/bakery-site-1.crt" in bad["site-ca"].seen
    assert "nfs-common not installed" in bad["site-packages"].seen
    assert "open-iscsi 2.1.9-3ubuntu4 (want 2.1.9-3ubuntu5)" in bad["site-packages"].seen
    assert exp["registryHosts"][0] in bad["registry-mirrors"].seen


def test_pinned_but_not_held_fails(tmp_path):
    exp = {"extraPackages": [{"name": "open-iscsi", "version": "2.1.9-3ubuntu5"}]}
    table = {("dpkg-query",): (0, "open-iscsi 2.1.9-3ubuntu5 ii \n"), ("apt-mark", "showhold"): (0, "\n")}
    (r,) = nc.check_site(FakeNode(tmp_path, table), exp)
    assert not r.ok and r.seen == "open-iscsi not held"


def test_no_site_no_site_checks_but_the_time_daemon(site):
    exp = json.loads((site("bare") / "files/opt/bakery/node-check.json").read_text())
    assert exp["caCertificates"] == [] and exp["extraPackages"] == [] and exp["registryHosts"] == []
    assert [r.name for r in nc.check_site(FakeNode("/nonexistent", {}), exp)] == ["time-daemon"]


def test_dpkg_query_parser_reads_real_output():
    dpkg_query = shutil.which("dpkg-query")
    if not dpkg_query:
        pytest.skip("no dpkg-query here")
    r = subprocess.run([dpkg_query, "-W", "-f=${Package} ${Version} ${db:Status-Abbrev}\n", "bash", "dpkg"],
                       capture_output=True, text=True, check=True)
    got = nc.parse_dpkg_query(r.stdout)
    assert set(got) == {"bash", "dpkg"} and all(s.startswith("ii") for _, s in got.values())


def test_hcl_of_every_variant_matches_the_plugin_specs(site):
    for name in VARIANTS:
        merged, errors = check_packer_dir(site(name))
        assert errors == [], name
        assert [labels[0] for labels, _ in labelled(merged.get("variable"), 1) if labels[0].endswith("proxy")] == [
            "http_proxy", "https_proxy", "no_proxy"]


# --- containerd pulls through the mirror --------------------------------------------------------

def _tiny_registry():
    """A registry serving one image (an OCI manifest, its config and one gzip layer) at any
    repository path, recording every request path."""
    import gzip
    import hashlib
    import http.server
    import io
    import tarfile
    import threading

    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as t:
        info = tarfile.TarInfo("hello")
        info.size = 3
        t.addfile(info, io.BytesIO(b"hi\n"))
    layer = gzip.compress(tar.getvalue(), mtime=0)
    diff_id = "sha256:" + hashlib.sha256(tar.getvalue()).hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [diff_id]},
                         "config": {}}).encode()

    def desc(media, data):
        return {"mediaType": media, "digest": "sha256:" + hashlib.sha256(data).hexdigest(), "size": len(data)}
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": desc("application/vnd.oci.image.config.v1+json", config),
                           "layers": [desc("application/vnd.oci.image.layer.v1.tar+gzip", layer)]}).encode()
    blobs = {"sha256:" + hashlib.sha256(b).hexdigest(): b for b in (config, layer)}
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _answer(self, body: bool):
            seen.append(self.path)
            path = self.path.split("?", 1)[0]  # containerd adds ?ns=<registry> for a mirror
            if "/manifests/" in path:
                data, ctype = manifest, "application/vnd.oci.image.manifest.v1+json"
            elif "/blobs/" in path and path.rsplit("/", 1)[1] in blobs:
                data, ctype = blobs[path.rsplit("/", 1)[1]], "application/octet-stream"
            else:
                self.send_response(404)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Docker-Content-Digest", "sha256:" + hashlib.sha256(data).hexdigest())
            self.end_headers()
            if body:
                self.wfile.write(data)

        def do_HEAD(self):
            self._answer(False)

        def do_GET(self):
            self._answer(True)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, seen


@pytest.fixture
def containerd_daemon(tmp_path):
    """A containerd of its own (root, state, socket under tmp_path; no CRI plugin)."""
    containerd, ctr = need("containerd"), need("ctr")
    if os.geteuid() != 0:
        pytest.skip("containerd runs as root only (CI runs as root)")
    base = tmp_path / "ctrd"
    base.mkdir()
    sock = base / "c.sock"
    (base / "config.toml").write_text(
        f'version = 2\nroot = "{base}/root"\nstate = "{base}/state"\n'
        f'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n[grpc]\n  address = "{sock}"\n')
    with open(base / "log", "w") as log:
        proc = subprocess.Popen([containerd, "--config", str(base / "config.toml")], stdout=log,
                                stderr=subprocess.STDOUT)
    try:
        for _ in range(100):
            if subprocess.run([ctr, "--address", str(sock), "version"], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        else:
            pytest.skip("containerd did not start here: " + (base / "log").read_text()[-500:])
        yield ctr, sock
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_containerd_pulls_through_the_rendered_mirror_and_keeps_the_name(containerd_daemon, tmp_path):
    """bakery's hosts.toml, as rendered for a mirror at http://127.0.0.1:PORT/v2/registry.k8s.io
    (a Harbor-style project path), read by containerd's own resolver (ctr --hosts-dir): the
    pull goes to the mirror under that path, and the image keeps its canonical name."""
    from conftest import render_here

    ctr, sock = containerd_daemon
    server, seen = _tiny_registry()
    try:
        mirror = f"http://127.0.0.1:{server.server_address[1]}/v2/registry.k8s.io"

        def mutate(spec):
            spec["mirrors"]["registries"] = {"registry.k8s.io": mirror}
        src = tmp_path / "c.yaml"
        src.write_text(site_text(mutate))
        certs_d = render_here(src, tmp_path / "out") / "packer/files/etc/containerd/certs.d"
        assert sorted(p.name for p in certs_d.iterdir()) == ["registry.k8s.io"]
        ref = "registry.k8s.io/bakery-test/pause:3.10"
        r = subprocess.run([ctr, "--address", str(sock), "images", "pull", "--snapshotter", "native",
                            "--hosts-dir", str(certs_d), ref], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, (r.stdout + r.stderr, seen)
        # under the mirror's own path (override_path), named as a mirror of registry.k8s.io
        assert "/v2/registry.k8s.io/bakery-test/pause/manifests/3.10?ns=registry.k8s.io" in seen
        assert any("/v2/registry.k8s.io/bakery-test/pause/blobs/sha256:" in p for p in seen)
        assert not [p for p in seen if not p.startswith("/v2/registry.k8s.io/")]
        listed = subprocess.run([ctr, "--address", str(sock), "images", "ls", "-q"], capture_output=True, text=True,
                                check=True).stdout.split()
        assert listed == [ref]
    finally:
        server.shutdown()


@pytest.mark.parametrize("name", ["enterprise", "debian-12"])
def test_every_site_image_file_is_installed_by_a_script_with_its_mode(site, name):
    pdir = site(name)
    installed = {w[5]: w[3] for _, w in commands_in_order(pdir)
                 if w[:2] == ["install", "-D"] and w[4] == "/tmp/bakery/files" + w[5]}
    files = {"/" + p.relative_to(pdir / "files").as_posix() for p in (pdir / "files").rglob("*") if p.is_file()}
    assert set(installed) == files
    assert installed["/etc/corp/site.conf"] == "0644"
    assert installed["/usr/local/share/ca-certificates/bakery-site-1.crt"] == "0644"
