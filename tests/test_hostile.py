"""Issue 8: hostile and odd input. Hypothesis generates valid clusters (names, CIDRs, sizes,
labels, URLs full of shell and HCL metacharacters where the schema allows them) and every
output must still parse where its consumer reads it, with every user value intact and, in
shell, quoted."""
import ipaddress
import json
import re
import shutil
import subprocess

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

hcl2 = pytest.importorskip("hcl2")

DNS_LABEL = st.from_regex(r"\A[a-z]([a-z0-9-]{0,20}[a-z0-9])?\Z")
LABEL_VALUE = st.from_regex(r"\A([A-Za-z0-9]([-A-Za-z0-9_.]{0,20}[A-Za-z0-9])?)?\Z")
# metacharacters of shell and HCL, each with a marker no template contains by itself
NASTY = st.sampled_from(["$(touch${IFS}/tmp/pwned-bkry)", "${var.bkry}", "%{if}bkry%{endif}", "`id-bkry`",
                         ";reboot-bkry;", "bkry&&x", "|tee-bkry", "$BKRY_HOME", "!!bkry", "*?[bkry", "~bkry",
                         "#bkry", "<bkry>"])


@st.composite
def clusters(draw):
    n_nodes = draw(st.integers(1, 7))
    n_cp = draw(st.integers(1, min(3, n_nodes)))
    # a node network anywhere in 10/8, 172.16/12 or 192.168/16, never overlapping the pod
    # (100.64/10) or service (172.30/16 or 10.250/16 style) networks chosen below
    base = draw(st.sampled_from(["192.168", "10.20", "10.200"]))
    third = draw(st.integers(0, 250))
    prefix = draw(st.sampled_from([24, 25, 26]))
    node_net = ipaddress.ip_network(f"{base}.{third}.0/{prefix}", strict=False)
    hosts = list(node_net.hosts())
    addrs = draw(st.lists(st.sampled_from(hosts[1:]), min_size=n_nodes, max_size=n_nodes, unique=True))
    names = draw(st.lists(DNS_LABEL, min_size=n_nodes, max_size=n_nodes, unique=True))
    labels = draw(st.dictionaries(st.from_regex(r"\A[a-z]{1,8}(\.example\.com/[a-z]{1,8})?\Z"), LABEL_VALUE,
                                  max_size=3))
    nasty = draw(NASTY)
    name = draw(DNS_LABEL)
    os_ = draw(st.sampled_from(["ubuntu-22.04", "ubuntu-24.04", "debian-12"]))
    enc = draw(st.sampled_from(["IPIP", "IPIPCrossSubnet", "VXLAN", "VXLANCrossSubnet", "None"]))
    nodes = []
    for i in range(n_nodes):
        node = {"name": names[i], "role": "control-plane" if i < n_cp else "worker", "address": str(addrs[i])}
        if i == n_nodes - 1:
            node["labels"] = labels
        nodes.append(node)
    doc = {
        "apiVersion": "bakery.dev/v1alpha1", "kind": "Cluster", "metadata": {"name": name},
        "spec": {
            "kubernetes": {"version": "1.36.3"}, "containerd": {"version": "2.2.7"}, "os": os_,
            "network": {"nodeCidr": str(node_net), "gateway": str(hosts[0]), "nameservers": [str(hosts[0])],
                        "podCidr": "100.64.0.0/16", "serviceCidr": "172.30.0.0/16"},
            "cni": {"calico": {"version": "v3.32.1", "encapsulation": enc}},
            "secrets": {"keyAlgorithm": "ecdsa-p256"},
            "image": {"iso": {"url": f"https://mirror.example/{nasty}/x.iso"},
                      "proxmox": {"url": f"https://pve.example:8006/api2/json?{nasty}"}},
            "nodes": nodes,
        },
    }
    return doc, nasty


def _in_quotes(line: str, index: int) -> bool:
    """Whether line[index] sits inside single or double quotes, as bash reads the line."""
    state = None
    i = 0
    while i < index:
        c = line[i]
        if state is None:
            if c == "\\":
                i += 2
                continue
            if c in "'\"":
                state = c
        elif state == "'":
            if c == "'":
                state = None
        elif state == '"':
            if c == "\\":
                i += 2
                continue
            if c == '"':
                state = None
        i += 1
    return state is not None


def shell_texts(files):
    """(name, text) of every shell script rendered, including those inside user-data."""
    for f in files:
        if f.path.endswith(".sh"):
            yield f.path, f.content.decode()
        elif f.path.endswith("user-data"):
            doc = yaml.safe_load(f.content)
            for wf in doc.get("write_files") or []:
                if str(wf.get("path", "")).endswith((".sh", ".env")):  # the script and its values
                    yield f"{f.path}:{wf['path']}", wf["content"]


@pytest.fixture(scope="module")
def bundle():
    from bakery.pki import bundle as secrets
    from bakery.spec import model, validate
    from bakery.spec.loader import load_text

    from conftest import LAB
    doc = load_text(LAB.read_text().replace("  image:\n", "  secrets: {keyAlgorithm: ecdsa-p256}\n  image:\n"))
    report, data = validate.validate(doc)
    return secrets.new_bundle(model.build(data))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(generated=clusters())
def test_every_output_parses_and_user_values_stay_intact(bundle, tmp_path_factory, generated):
    from bakery.render import collect
    from bakery.spec import model, validate
    from bakery.spec.loader import load_text

    data, nasty = generated
    doc = load_text(json.dumps(data))
    report, filled = validate.validate(doc)
    assert not report.errors, [str(d) for d in report.errors]
    cluster = model.build(filled)
    files = collect(cluster, bundle, bundle_in_tree=True)
    paths = {f.path for f in files}
    for node in cluster.nodes:
        for name in ("user-data", "meta-data", "network-config"):
            assert f"nodes/{node.name}/{name}" in paths
    tmp = tmp_path_factory.mktemp("sh")
    for f in files:
        if f.path.endswith((".yaml", "user-data", "meta-data", "network-config", "admin.conf")) and "packer/" not in f.path:
            yaml.safe_load(f.content)
        if f.path.endswith(".json"):
            json.loads(f.content)
        if f.path.endswith(".pkr.hcl"):
            parsed = hcl2.loads(f.content.decode())
            if f.path.endswith("variables.pkr.hcl"):
                defaults = {k.strip('"'): b.get("default") for v in parsed["variable"] for k, b in v.items()}
                # each URL reads back exactly as Packer will see it: HCL's $${ and %%{ are a
                # literal ${ and %{, so no user text becomes a template
                for var, want in (("iso_urls", data["spec"]["image"]["iso"]["url"]),
                                  ("proxmox_url", data["spec"]["image"]["proxmox"]["url"])):
                    raw = defaults[var]
                    if var == "iso_urls":  # a user URL is the one location: a list of one
                        assert isinstance(raw, list) and len(raw) == 1, raw
                        raw = raw[0]
                    raw = raw[1:-1]
                    assert not re.search(r"(?<![$%])[$%]\{", raw.replace("$${", "").replace("%%{", "")), (var, raw)
                    assert raw.replace("$${", "${").replace("%%{", "%{") == want, (var, raw)
    for name, text in shell_texts(files):
        script = tmp / re.sub(r"[^A-Za-z0-9.]", "_", name)
        script.write_text(text)
        r = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert r.returncode == 0, (name, r.stderr)
        # URLs are for Packer alone: never spliced into a script
        assert "bkry" not in text, name
        for value in [cluster.name, *[n.name for n in cluster.nodes], *[str(n.address) for n in cluster.nodes]]:
            if re.fullmatch(r"[A-Za-z0-9._/-]+", value):
                continue  # one shell word as it is (the schema allows nothing else here)
            for line in text.splitlines():
                if line.lstrip().startswith("#"):
                    continue
                for m in re.finditer(re.escape(value), line):
                    assert _in_quotes(line, m.start()), (name, line)


def test_quote_scanner():
    assert _in_quotes("echo 'a $(x) b'", 8)
    assert _in_quotes('echo "a $(x) b"', 8)
    assert not _in_quotes("echo a $(x) b", 7)
    assert not _in_quotes("echo 'a' $(x)", 9)
    assert _in_quotes("""echo 'it'"'"'s $(x)'""", 15)


def test_shellcheck_on_a_hostile_render(bundle, tmp_path):
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (.ci/run installs it)")
    from bakery.render import collect
    from bakery.spec import model, validate
    from bakery.spec.loader import load_text

    from conftest import LAB
    text = LAB.read_text().replace("  image:\n", "  image:\n    iso: {url: 'https://m.example/$(id)`x`;y/x.iso'}\n")
    report, data = validate.validate(load_text(text))
    assert not report.errors
    files = collect(model.build(data), bundle, bundle_in_tree=True)
    scripts = []
    for name, body in shell_texts(files):
        scripts.append(tmp_path / re.sub(r"[^A-Za-z0-9.]", "_", name))
        assert not scripts[-1].exists(), name
        scripts[-1].write_text(body)
    assert scripts
    # one run checks each file on its own and fails if any fails; its findings name the file
    r = subprocess.run(["shellcheck", "-s", "bash", *map(str, scripts)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout
