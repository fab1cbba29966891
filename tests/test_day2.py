"""Issue 17, day 2: the bundle's credential lifecycle (`bakery secrets renew`, `secrets check`
warnings) and the token's age (`token-expired`). The clock is the render's `now`, so a year
passes in a test."""
from __future__ import annotations

import base64
import datetime
import subprocess

import pytest
import yaml

from conftest import LAB, need, run_bakery

DAY = datetime.timedelta(days=1)


def load(text: str):
    from bakery.spec.pipeline import load_cluster

    return load_cluster(text)[0]


def lab_with(tmp_path, **secrets_or_bootstrap):
    """The lab example with spec.secrets / spec.bootstrap fields set."""
    doc = yaml.safe_load(LAB.read_text())
    for key, value in secrets_or_bootstrap.items():
        section = "bootstrap" if key == "tokenTTL" else "secrets"
        doc["spec"].setdefault(section, {})[key] = value
    f = tmp_path / "cluster.yaml"
    f.write_text(yaml.safe_dump(doc))
    return f


def render(cluster_file, out, *, now, **kw):
    from bakery.render import render_cluster

    return render_cluster(load(str(cluster_file)), out=str(out), now=now, **kw)


def bundle_doc(path):
    return yaml.safe_load(path.read_bytes())


def admin_cert_of(admin_conf: bytes):
    from cryptography import x509

    data = yaml.safe_load(admin_conf)["users"][0]["user"]["client-certificate-data"]
    return x509.load_pem_x509_certificate(base64.b64decode(data))


# -- 1. renew -----------------------------------------------------------------------------

def test_a_bundle_renewed_at_340_days_renders_for_another_year(tmp_path):
    from bakery.errors import InputError

    t0 = datetime.datetime.now(datetime.UTC)
    out = tmp_path / "out"
    render(LAB, out, now=t0)
    first = bundle_doc(out / "secrets.yaml")
    later = t0 + 340 * DAY
    with pytest.raises(InputError, match=r"admin\.certificate .* expires on .*bakery secrets renew"):
        render(LAB, out, now=later)
    result = render(LAB, out, now=later, renew=True)
    assert any("renewed the admin certificate" in m for m in result.messages)
    renewed = bundle_doc(out / "secrets.yaml")
    # CAs, the service-account key and the token stay; the admin credential is new
    for keep in ("ca", "etcdCa", "frontProxyCa", "serviceAccount", "bootstrapToken", "bootstrapTokenCreated"):
        assert renewed[keep] == first[keep], keep
    assert renewed["admin"]["key"] != first["admin"]["key"]
    cert = admin_cert_of((out / "admin.conf").read_bytes())
    assert abs(cert.not_valid_after_utc - (later + 365 * DAY)) < 2 * DAY
    assert render(LAB, out, now=later + 300 * DAY).exit_code == 0  # a year on, it still renders
    with pytest.raises(InputError, match="bakery secrets renew"):
        render(LAB, out, now=later + 340 * DAY)


def test_the_renewed_certificate_is_verified_by_openssl_at_its_time(tmp_path):
    openssl = need("openssl")
    t0 = datetime.datetime.now(datetime.UTC)
    out = tmp_path / "out"
    render(LAB, out, now=t0)
    later = t0 + 340 * DAY
    render(LAB, out, now=later, renew=True)
    doc = bundle_doc(out / "secrets.yaml")
    (tmp_path / "ca.crt").write_text(doc["ca"]["certificate"])
    (tmp_path / "admin.crt").write_text(doc["admin"]["certificate"])
    at = str(int((later + DAY).timestamp()))
    r = subprocess.run([openssl, "verify", "-attime", at, "-purpose", "sslclient", "-CAfile", tmp_path / "ca.crt",
                        tmp_path / "admin.crt"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    # and the new key is the certificate's
    r = subprocess.run([openssl, "x509", "-noout", "-pubkey", "-in", tmp_path / "admin.crt"], capture_output=True)
    (tmp_path / "admin.key").write_text(doc["admin"]["key"])
    k = subprocess.run([openssl, "pkey", "-pubout", "-in", tmp_path / "admin.key"], capture_output=True)
    assert r.stdout == k.stdout and r.stdout


def test_renew_never_extends_beyond_the_ca(tmp_path):
    f = lab_with(tmp_path, caValidityDays=400, adminCertValidityDays=365)
    t0 = datetime.datetime.now(datetime.UTC)
    out = tmp_path / "out"
    render(f, out, now=t0)
    render(f, out, now=t0 + 300 * DAY, renew=True)
    cert = admin_cert_of((out / "admin.conf").read_bytes())
    assert cert.not_valid_after_utc <= t0 + 400 * DAY + DAY


@pytest.mark.parametrize("where", ["tree", "external"])
def test_secrets_renew_command(tmp_path, where):
    out = tmp_path / "out"
    extra = ["--secrets", tmp_path / "vault" / "lab.yaml"] if where == "external" else []
    assert run_bakery("render", LAB, "--out", out, *extra).returncode == 0
    bundle = tmp_path / "vault" / "lab.yaml" if extra else out / "secrets.yaml"
    before, conf = bundle_doc(bundle), (out / "admin.conf").read_bytes()
    r = run_bakery("secrets", "renew", LAB, "--out", out, *extra)
    assert r.returncode == 0, r.stderr
    assert "renewed the admin certificate" in r.stdout and "PRIVATE" not in r.stdout + r.stderr
    after = bundle_doc(bundle)
    assert after["admin"] != before["admin"] and after["ca"] == before["ca"]
    assert after["bootstrapToken"] == before["bootstrapToken"]
    assert (out / "admin.conf").read_bytes() != conf
    assert base64.b64decode(yaml.safe_load((out / "admin.conf").read_bytes())["users"][0]["user"][
        "client-key-data"]).decode() == after["admin"]["key"]
    assert run_bakery("render", "--check", LAB, "--out", out, *extra).returncode == 0


def test_secrets_renew_without_a_bundle_is_bad_input(tmp_path):
    r = run_bakery("secrets", "renew", LAB, "--out", tmp_path / "out")
    assert r.returncode == 2 and "no secrets bundle" in r.stderr and not (tmp_path / "out").exists()


# -- secrets check ---------------------------------------------------------------------------

def test_secrets_check_warns_90_days_ahead_and_names_renew(tmp_path):
    f = lab_with(tmp_path, adminCertValidityDays=60)
    out = tmp_path / "out"
    assert run_bakery("render", f, "--out", out).returncode == 0
    r = run_bakery("secrets", "check", f, "--secrets", out / "secrets.yaml")
    assert r.returncode == 0, r.stderr
    assert "warning[cert-expiring]: admin.certificate" in r.stderr and "bakery secrets renew" in r.stderr
    assert "one year after the node's first boot" in r.stdout and "kubeadm certs renew" in r.stdout
    # a fresh year-long admin certificate: no warning
    (tmp_path / "y").mkdir()
    f2 = lab_with(tmp_path / "y", adminCertValidityDays=365)
    assert run_bakery("render", f2, "--out", tmp_path / "o2").returncode == 0
    r = run_bakery("secrets", "check", f2, "--secrets", tmp_path / "o2" / "secrets.yaml")
    assert r.returncode == 0 and "warning" not in r.stderr


# -- 3. the token's age ----------------------------------------------------------------------

def test_a_render_after_the_tokens_ttl_warns_token_expired(tmp_path):
    t0 = datetime.datetime.now(datetime.UTC)
    out = tmp_path / "out"
    assert render(LAB, out, now=t0).warnings == []
    made = bundle_doc(out / "secrets.yaml")["bootstrapTokenCreated"]
    assert made == f"{t0:%Y-%m-%dT%H:%M:%SZ}"
    assert render(LAB, out, now=t0 + 0.5 * DAY).warnings == []  # within the lab's 24h
    late = render(LAB, out, now=t0 + 2 * DAY)
    assert len(late.warnings) == 1 and late.warnings[0].startswith("warning[token-expired]")
    assert "--rotate-token" in late.warnings[0] and "kubeadm token create" in late.warnings[0]
    rotated = render(LAB, out, now=t0 + 2 * DAY, rotate_token=True)
    assert rotated.warnings == []
    assert bundle_doc(out / "secrets.yaml")["bootstrapTokenCreated"] == f"{t0 + 2 * DAY:%Y-%m-%dT%H:%M:%SZ}"
    assert any("kubeadm token create" in m for m in rotated.messages)


def test_a_token_that_never_expires_never_warns(tmp_path):
    f = lab_with(tmp_path, tokenTTL="0")
    t0 = datetime.datetime.now(datetime.UTC)
    render(f, tmp_path / "out", now=t0)
    assert render(f, tmp_path / "out", now=t0 + 400 * DAY, renew=True).warnings == []


def test_a_bundle_that_does_not_say_when_its_token_was_made(tmp_path):
    """An older bakery's bundle: a new cluster cannot tell and needs not (kubeadm init registers
    the token afresh); a running one warns token-age-unknown."""
    out = tmp_path / "out"
    t0 = datetime.datetime.now(datetime.UTC)
    f = ha_variant(tmp_path)
    render(f, out, now=t0)
    text = (out / "secrets.yaml").read_text()
    lines = [line for line in text.splitlines(keepends=True) if not line.startswith("bootstrapTokenCreated:")]
    assert len(lines) == len(text.splitlines()) - 1
    (out / "secrets.yaml").write_text("".join(lines))
    assert render(f, out, now=t0 + 5 * DAY).warnings == []
    running = render(ha_variant(tmp_path, initialized=True), out, now=t0 + 5 * DAY)
    assert len(running.warnings) == 1 and running.warnings[0].startswith("warning[token-age-unknown]")
    assert "--rotate-token" in running.warnings[0]


def test_an_unquoted_token_time_is_the_same_instant(tmp_path):
    from bakery.pki.bundle import parse

    out = tmp_path / "out"
    render(LAB, out, now=datetime.datetime.now(datetime.UTC))
    text = (out / "secrets.yaml").read_text()
    made = bundle_doc(out / "secrets.yaml")["bootstrapTokenCreated"]
    unquoted = text.replace(f"bootstrapTokenCreated: '{made}'", f"bootstrapTokenCreated: {made}")
    assert unquoted != text  # bakery writes it quoted; a tool that rewrites the YAML may not
    assert parse(unquoted.encode()).token_created == made


def test_an_expiring_admin_certificate_names_renew_not_a_backup(tmp_path):
    from bakery.errors import InputError

    t0 = datetime.datetime.now(datetime.UTC)
    out = tmp_path / "out"
    render(LAB, out, now=t0)
    with pytest.raises(InputError) as caught:
        render(LAB, out, now=t0 + 400 * DAY)
    d = caught.value.diagnostics[0]
    assert d.check == "secrets-renew" and "bakery secrets renew" in d.message
    assert "backup" not in d.message and "unusable" not in d.message
    result = render(LAB, out, now=t0 + 400 * DAY, renew=True)
    assert any("stopped working on" in m for m in result.messages)


def test_secrets_check_warns_of_an_ending_ca(tmp_path):
    f = lab_with(tmp_path, caValidityDays=60, adminCertValidityDays=31)
    out = tmp_path / "out"
    assert run_bakery("render", f, "--out", out).returncode == 0
    r = run_bakery("secrets", "check", f, "--secrets", out / "secrets.yaml")
    assert r.returncode == 0, r.stderr
    assert "warning[cert-expiring]: ca.certificate" in r.stderr and "bakery never rotates a CA" in r.stderr
    assert "warning[cert-expiring]: etcdCa.certificate" in r.stderr


@pytest.mark.parametrize("change", ["first-removed", "one-put-before", "initialized-back-to-false"])
def test_a_rerender_never_hands_kubeadm_init_to_another_node(tmp_path, change):
    out = tmp_path / "out"
    render(ha_variant(tmp_path, initialized=change == "initialized-back-to-false"), out,
           now=datetime.datetime.now(datetime.UTC))
    doc = yaml.safe_load(HA.read_text())
    if change == "first-removed":
        doc["spec"]["nodes"] = doc["spec"]["nodes"][1:]
    elif change == "one-put-before":
        doc["spec"]["nodes"].insert(0, {"name": "cp0", "role": "control-plane", "address": "10.10.0.14",
                                        "mac": "52:54:00:10:00:14"})
    f = tmp_path / "changed.yaml"
    f.write_text(yaml.safe_dump(doc))
    before = (out / "manifest.json").read_bytes()
    r = run_bakery("render", f, "--out", out)
    assert r.returncode == 2 and "error[init-node-changed]" in r.stderr and "initialized: true" in r.stderr
    assert (out / "manifest.json").read_bytes() == before
    doc["spec"]["bootstrap"]["initialized"] = True  # the way on
    f.write_text(yaml.safe_dump(doc))
    assert run_bakery("render", f, "--out", out).returncode == 0


@pytest.mark.parametrize("value", ["yesterday", "2026-01-31 12:00:00", "2026-01-31T12:00:00+01:00", "12"])
def test_a_bad_token_time_is_refused(tmp_path, value):
    from bakery.pki.bundle import BadBundle, parse

    out = tmp_path / "out"
    render(LAB, out, now=datetime.datetime.now(datetime.UTC))
    doc = bundle_doc(out / "secrets.yaml")
    doc["bootstrapTokenCreated"] = value
    with pytest.raises(BadBundle, match="bootstrapTokenCreated"):
        parse(yaml.safe_dump(doc).encode())


# -- 2 and 3: a running cluster; nodes added and re-created, rehearsed -------------------------

HA = LAB.parent.parent / "ha" / "cluster.yaml"


def ha_variant(folder, *, initialized=None, add=(), endpoint=None, vip="keep"):
    doc = yaml.safe_load(HA.read_text())
    if initialized is not None:
        doc["spec"]["bootstrap"]["initialized"] = initialized
    doc["spec"]["nodes"] += list(add)
    if endpoint is not None:
        doc["spec"]["controlPlane"]["endpoint"] = endpoint
    if vip is None:
        doc["spec"]["controlPlane"].pop("vip", None)
    folder.mkdir(exist_ok=True)
    f = folder / "cluster.yaml"
    f.write_text(yaml.safe_dump(doc))
    return f


def actions(out) -> dict[str, str]:
    found = {}
    for env in (out / "nodes").glob("*/user-data"):
        m = __import__("re").search(r"ACTION=(\S+)", env.read_text())
        found[env.parent.name] = m.group(1).strip("'\"")
    return found


def test_an_initialized_cluster_has_no_init_seed(tmp_path):
    from conftest import render_here

    out = render_here(ha_variant(tmp_path, initialized=True), tmp_path / "out")
    got = actions(out)
    assert got == {"cp1": "join-control-plane", "cp2": "join-control-plane", "cp3": "join-control-plane",
                   "worker1": "join-worker", "worker2": "join-worker", "worker3": "join-worker"}
    assert "kubeadm init, then installs Calico" not in (out / "README.md").read_text()  # bakery explain


@pytest.mark.parametrize("case", ["sole", "endpoint-is-a-node"])
def test_a_seed_that_would_join_itself_is_refused(tmp_path, case):
    if case == "sole":
        doc = yaml.safe_load((LAB.parent.parent / "single" / "cluster.yaml").read_text())
        doc["spec"].setdefault("bootstrap", {})["initialized"] = True
        f = tmp_path / "cluster.yaml"
        f.write_text(yaml.safe_dump(doc))
        who = doc["spec"]["nodes"][0]["name"]
    else:
        f = ha_variant(tmp_path, initialized=True, vip=None, endpoint="10.10.0.11:6443")
        who = "cp1"
    r = run_bakery("render", f, "--out", tmp_path / "out")
    assert r.returncode == 2 and "error[join-self]" in r.stderr and who in r.stderr, r.stderr
    assert ":" in r.stderr.split("error[join-self]")[0]  # file:line:col
    assert not (tmp_path / "out").exists()


rehearsal = pytest.mark.skipif(__import__("os").geteuid() != 0, reason="the rehearsal needs root")


@pytest.fixture(scope="module")
def ha_running(tmp_path_factory):
    """The HA example rehearsed from scratch: the running cluster later tests start from."""
    import sys

    from conftest import ROOT, render_here

    sys.path.insert(0, str(ROOT / "tests"))
    from lab.driver import rehearse

    d = tmp_path_factory.mktemp("ha")
    out = render_here(HA, d / "out")
    result = rehearse(out, say=lambda line: None)
    assert result.ok, result.failure
    return d, out, result.state


def replay(out, state, boot):
    from lab.driver import rehearse

    return rehearse(out, say=lambda line: None, running=__import__("copy").deepcopy(state), boot=boot)


def rerendered(out, cluster_file, folder):
    """A copy of the running cluster's output folder (its bundle) rendered again from cluster_file."""
    from conftest import render_here

    new = folder / "out"
    __import__("shutil").copytree(out, new, symlinks=True)
    return render_here(cluster_file, new)


def retired(state, node):
    """The state after `bakery retire`'s steps for a node: its etcd member removed (for a
    control-plane node), its Node object deleted, its VM destroyed."""
    st = __import__("copy").deepcopy(state)
    if node in st["etcd"]:
        st["etcd"].remove(node)
    st["nodes"].pop(node)
    return st


@rehearsal
@pytest.mark.parametrize("initialized", [False, True])
def test_a_worker_added_later_joins_the_running_cluster(ha_running, tmp_path, initialized):
    _, out, state = ha_running
    late = {"name": "worker4", "role": "worker", "address": "10.10.0.24", "mac": "52:54:00:10:00:24"}
    new = rerendered(out, ha_variant(tmp_path, initialized=initialized, add=[late]), tmp_path)
    assert actions(new)["worker4"] == "join-worker"
    result = replay(new, state, ["worker4"])
    assert result.ok, f"{result.failure}\n" + "\n".join(result.lines[-6:])
    assert result.state["nodes"]["worker4"]["internalIP"] == "10.10.0.24"
    assert [ln for ln in result.lines if ln.startswith("cluster:")][-1] == "cluster: secrets: ok"


@rehearsal
@pytest.mark.parametrize("node", ["cp1", "cp2"])
def test_a_control_plane_node_of_a_running_ha_cluster_is_recreated(ha_running, tmp_path, node):
    _, out, state = ha_running
    new = rerendered(out, ha_variant(tmp_path, initialized=True), tmp_path)
    result = replay(new, retired(state, node), [node])
    assert result.ok, f"{result.failure}\n" + "\n".join(result.lines[-6:])
    st = result.state
    assert node in st["etcd"] and sorted(st["etcd"]) == ["cp1", "cp2", "cp3"]
    assert st["nodes"][node]["apiServer"] and st["initialized"]


@rehearsal
def test_an_init_seed_cannot_recreate_a_node_of_a_running_cluster(ha_running):
    _, out, state = ha_running  # rendered with initialized false: cp1 runs kubeadm init
    result = replay(out, retired(state, "cp1"), ["cp1"])
    assert not result.ok and result.failure.node == "cp1" and "exists already" in result.failure.reason


@rehearsal
@pytest.mark.parametrize("left", ["etcd-member", "node-object"])
def test_a_node_not_retired_first_is_refused(ha_running, tmp_path, left):
    _, out, state = ha_running
    new = rerendered(out, ha_variant(tmp_path, initialized=True), tmp_path)
    st = __import__("copy").deepcopy(state)
    if left == "etcd-member":
        st["nodes"].pop("cp2")  # the Node object deleted, the etcd member not removed
        want = "etcd still has a member"
    else:
        st["etcd"].remove("cp2")  # the etcd member removed, the Node object left
        want = "already exists"
    result = replay(new, st, ["cp2"])
    assert not result.ok and result.failure.node == "cp2" and want in result.failure.reason, result.failure


# -- 4. retiring a node ---------------------------------------------------------------------------

def test_retire_prints_the_steps_in_order(tmp_path):
    import json

    r = run_bakery("retire", HA, "cp2", "--out", tmp_path / "out", "--output", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["node"] == "cp2" and doc["role"] == "control-plane"
    assert [s["step"] for s in doc["steps"]] == ["cordon", "drain", "etcd-member", "node-object", "vm", "cluster-yaml"]
    assert "etcd-cp1" in doc["steps"][2]["run"] and "member remove" in doc["steps"][2]["run"]
    assert doc["steps"][4]["run"] == "./proxmox/destroy.sh cp2"
    assert any("control-plane-even" in w for w in doc["warnings"])
    r = run_bakery("retire", LAB, "k8s-node1", "--out", tmp_path / "out")
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert lines[0].startswith("retire k8s-node1") and "etcd" not in r.stdout
    assert [ln.split(".", 1)[0] for ln in lines if ln[:1].isdigit()] == ["1", "2", "3", "4", "5", "6"]
    assert "destroy-vms.sh k8s-node1" in r.stdout and "delete node k8s-node1" in r.stdout


@pytest.mark.parametrize("case", ["unknown", "last-control-plane"])
def test_retire_refuses_what_cannot_be_done(tmp_path, case):
    if case == "unknown":
        r = run_bakery("retire", LAB, "nope")
        assert r.returncode == 2 and "error[retire-node]" in r.stderr
    else:
        single = LAB.parent.parent / "single" / "cluster.yaml"
        r = run_bakery("retire", single, yaml.safe_load(single.read_text())["spec"]["nodes"][0]["name"])
        assert r.returncode == 2 and "error[retire-last-control-plane]" in r.stderr


def test_the_etcd_step_removes_the_right_member(tmp_path):
    """The printed etcd step, run by bash against a kubectl that answers `exec etcd-X --
    etcdctl member list` as etcdctl's simple format does ("ID, status, name, peer URLs,
    client URLs, is learner") and records `member remove`."""
    import json
    import os

    bash = need("bash")
    r = run_bakery("retire", HA, "cp3", "--out", tmp_path, "--output", "json")
    step = next(s for s in json.loads(r.stdout)["steps"] if s["step"] == "etcd-member")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "kubectl").write_text(
        "#!/bin/sh\n"
        f"echo \"$*\" >> {tmp_path}/calls\n"
        "case \"$*\" in\n"
        "  *'member list'*) printf '%s\\n' "
        "'8e9e05c52164694d, started, cp1, https://10.10.0.11:2380, https://10.10.0.11:2379, false' "
        "'91bc3c398fb3c146, started, cp2, https://10.10.0.12:2380, https://10.10.0.12:2379, false' "
        "'fd422379fda50e48, started, cp3, https://10.10.0.13:2380, https://10.10.0.13:2379, false' ;;\n"
        "esac\n")
    (bindir / "kubectl").chmod(0o755)
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}"}
    done = subprocess.run([bash, "-c", step["run"]], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    removes = [ln for ln in (tmp_path / "calls").read_text().splitlines() if "member remove" in ln]
    assert len(removes) == 1 and removes[0].endswith("member remove fd422379fda50e48")
    assert "exec etcd-cp1 --" in removes[0]


# -- 5. upgrades by replacement -----------------------------------------------------------------

def versioned(folder, source, version):
    doc = yaml.safe_load(source.read_text())
    doc["spec"]["kubernetes"]["version"] = version
    if version.startswith("1.34."):  # the catalog's containerd for 1.34 (2.2 is for 1.35 on)
        doc["spec"]["containerd"]["version"] = "2.1.5"
    folder.mkdir(exist_ok=True)
    f = folder / f"cluster-{version}.yaml"
    f.write_text(yaml.safe_dump(doc))
    return f


def test_a_version_bump_writes_the_ordered_replacement_plan(tmp_path):
    import json

    out = tmp_path / "out"
    old = versioned(tmp_path, HA, "1.35.7")
    assert run_bakery("render", old, "--out", out).returncode == 0
    assert not (out / "upgrade.json").exists()
    new = versioned(tmp_path, HA, "1.36.3")
    r = run_bakery("render", new, "--out", out)
    assert r.returncode == 0, r.stderr
    assert "upgrade from Kubernetes 1.35.7 to 1.36.3" in r.stdout and "UPGRADE.md" in r.stdout
    doc = json.loads((out / "upgrade.json").read_text())
    assert doc["from"] == "1.35.7" and doc["to"] == "1.36.3" and doc["image"].startswith("k8s-1-36-3-")
    assert [(s["node"], s["role"]) for s in doc["steps"]] == [
        ("cp1", "control-plane"), ("cp2", "control-plane"), ("cp3", "control-plane"),
        ("worker1", "worker"), ("worker2", "worker"), ("worker3", "worker")]
    first, last = doc["steps"][0]["actions"], doc["steps"][2]["actions"]
    assert "--rotate-token" in first[0]  # an old cluster's token has long expired
    assert "kubeadm-config" in first[1] and "kubernetesVersion: v1.36.3" in first[1] and "replace -f -" in first[1]
    for step in doc["steps"]:
        text = "\n".join(step["actions"])
        order = [text.index(w) for w in ("drain", "delete node", "destroy", f"create {step['node']} from",
                                         "--for=condition=Ready", "uncordon")]
        assert order == sorted(order), step["node"]
        assert ("member remove" in text) == (step["role"] == "control-plane")
    assert "kubeadm upgrade apply v1.36.3" in last[-1] and "addons" in last[-1]
    assert set(actions(out).values()) == {"join-control-plane", "join-worker"}  # seeds join the running cluster
    assert "# Upgrading ha from Kubernetes 1.35.7 to 1.36.3" in (out / "UPGRADE.md").read_text()
    # a render again at the new version keeps the plan; --check agrees
    r = run_bakery("render", new, "--out", out)
    assert r.returncode == 0 and (out / "upgrade.json").exists() and "upgrade from" in r.stdout
    assert run_bakery("render", "--check", new, "--out", out).returncode == 0


@pytest.mark.parametrize("old,new,why", [("1.34.10", "1.36.3", "more than one minor"),
                                         ("1.36.3", "1.35.7", "does not downgrade"),
                                         ("1.35.7", "1.35.6", "does not downgrade")])
def test_skew_and_downgrade_are_refused(tmp_path, old, new, why):
    out = tmp_path / "out"
    assert run_bakery("render", versioned(tmp_path, HA, old), "--out", out).returncode == 0
    before = (out / "manifest.json").read_bytes()
    r = run_bakery("render", versioned(tmp_path, HA, new), "--out", out)
    assert r.returncode == 2 and "error[upgrade-skew]" in r.stderr and why in r.stderr, r.stderr
    assert (out / "manifest.json").read_bytes() == before and not (out / "upgrade.json").exists()


def test_a_single_control_plane_cluster_upgrades_its_control_plane_in_place(tmp_path):
    import json

    out = tmp_path / "out"
    assert run_bakery("render", versioned(tmp_path, LAB, "1.35.7"), "--out", out).returncode == 0
    assert run_bakery("render", versioned(tmp_path, LAB, "1.36.3"), "--out", out).returncode == 0
    doc = json.loads((out / "upgrade.json").read_text())
    cp = doc["steps"][0]
    text = "\n".join(cp["actions"])
    assert cp["node"] == "k8s-master" and "create k8s-master" not in text and "destroy" not in text
    order = [text.index(w) for w in ("drain", "core:/stable:/v1.36/", "kubeadm='1.36.3-*'",
                                     "sudo kubeadm upgrade apply v1.36.3 --yes", "kubelet='1.36.3-*'",
                                     "apt-mark hold kubelet kubectl", "restart kubelet", "uncordon")]
    assert order == sorted(order)
    assert all("create k8s-node" in "\n".join(s["actions"]) for s in doc["steps"][1:])
    md = (out / "UPGRADE.md").read_text()
    assert "A single control-plane node" in md and "do not re-create it from its seed" in md
    assert "none runs `kubeadm init`" not in md
    assert actions(out)["k8s-master"] == "init" and actions(out)["k8s-node1"] == "join-worker"


def test_an_ha_cluster_whose_endpoint_is_a_node_upgrades_its_control_plane_in_place(tmp_path):
    import json

    doc = yaml.safe_load(HA.read_text())
    doc["spec"]["controlPlane"] = {"endpoint": "10.10.0.11:6443"}
    src = tmp_path / "src.yaml"
    src.write_text(yaml.safe_dump(doc))
    out = tmp_path / "out"
    assert run_bakery("render", versioned(tmp_path, src, "1.35.7"), "--out", out).returncode == 0
    assert run_bakery("render", versioned(tmp_path, src, "1.36.3"), "--out", out).returncode == 0
    plan = json.loads((out / "upgrade.json").read_text())
    cps = {s["node"]: "\n".join(s["actions"]) for s in plan["steps"] if s["role"] == "control-plane"}
    assert "kubeadm upgrade apply v1.36.3" in cps["cp1"] and "kubeadm upgrade node" not in cps["cp1"]
    assert all("sudo kubeadm upgrade node" in cps[n] and "upgrade apply" not in cps[n] for n in ("cp2", "cp3"))
    assert "endpoint is a control-plane node's own address" in (out / "UPGRADE.md").read_text()


def test_a_second_bump_is_judged_from_where_the_upgrade_started(tmp_path):
    out = tmp_path / "out"
    assert run_bakery("render", versioned(tmp_path, HA, "1.34.10"), "--out", out).returncode == 0
    assert run_bakery("render", versioned(tmp_path, HA, "1.35.7"), "--out", out).returncode == 0
    # some nodes may still run 1.34: 1.36 would be two minors from them
    r = run_bakery("render", versioned(tmp_path, HA, "1.36.3"), "--out", out)
    assert r.returncode == 2 and "error[upgrade-skew]" in r.stderr and "1.34.10" in r.stderr
    # a patch on the way keeps the upgrade's start
    r = run_bakery("render", versioned(tmp_path, HA, "1.35.6"), "--out", out)
    assert r.returncode == 0 and "upgrade from Kubernetes 1.34.10 to 1.35.6" in r.stdout
    # going back to the start cancels it (the cluster runs: its seeds keep joining)
    back = versioned(tmp_path, ha_variant(tmp_path / "running", initialized=True), "1.34.10")
    r = run_bakery("render", back, "--out", out)
    assert r.returncode == 0 and "upgrade from" not in r.stdout and not (out / "upgrade.json").exists()


def test_an_upgrade_ends_with_upgrade_done(tmp_path):
    out = tmp_path / "out"
    assert run_bakery("render", versioned(tmp_path, HA, "1.35.7"), "--out", out).returncode == 0
    new = versioned(tmp_path, HA, "1.36.3")
    assert run_bakery("render", new, "--out", out).returncode == 0 and (out / "UPGRADE.md").exists()
    # the seeds joined during the upgrade: ending it with initialized false would hand out kubeadm init
    r = run_bakery("render", new, "--out", out, "--upgrade-done")
    assert r.returncode == 2 and "error[init-node-changed]" in r.stderr
    doc = yaml.safe_load(new.read_text())
    doc["spec"]["bootstrap"]["initialized"] = True
    new.write_text(yaml.safe_dump(doc))
    r = run_bakery("render", new, "--out", out, "--upgrade-done")
    assert r.returncode == 0 and "upgrade from" not in r.stdout
    assert not (out / "UPGRADE.md").exists() and not (out / "upgrade.json").exists()
    assert run_bakery("render", new, "--out", out).returncode == 0 and not (out / "upgrade.json").exists()


def test_an_upgrade_treats_the_cluster_as_running_for_the_token(tmp_path):
    t0 = datetime.datetime.now(datetime.UTC)
    out = tmp_path / "out"
    render(versioned(tmp_path, HA, "1.35.7"), out, now=t0)
    result = render(versioned(tmp_path, HA, "1.36.3"), out, now=t0 + 60 * DAY)
    assert len(result.warnings) == 1 and "expired on the running cluster" in result.warnings[0]


# -- 6. the skew policy, rehearsed ------------------------------------------------------------------

@pytest.fixture(scope="module")
def ha_running_135(tmp_path_factory):
    """The HA example at Kubernetes 1.35, rehearsed from scratch: the cluster to upgrade."""
    import sys

    from conftest import ROOT, render_here

    sys.path.insert(0, str(ROOT / "tests"))
    from lab.driver import rehearse

    d = tmp_path_factory.mktemp("ha135")
    out = render_here(versioned(d, HA, "1.35.7"), d / "out")
    result = rehearse(out, say=lambda line: None)
    assert result.ok, result.failure
    assert result.state["cluster"]["kubernetesVersion"] == "v1.35.7"
    return d, out, result.state


def upgraded(state, version):
    """The state after the upgrade plan's first action: the ClusterConfiguration at the new version."""
    st = __import__("copy").deepcopy(state)
    st["cluster"]["kubernetesVersion"] = version
    return st


@rehearsal
def test_a_node_of_the_next_minor_replaces_one_of_the_previous(ha_running_135, tmp_path):
    """The upgrade plan's order: the ClusterConfiguration set to 1.36, then cp1 retired and
    re-created from the 1.36 seed, joining the running 1.35 cluster."""
    from conftest import render_here

    _, out, state = ha_running_135
    new = tmp_path / "out"
    __import__("shutil").copytree(out, new, symlinks=True)
    render_here(versioned(tmp_path, HA, "1.36.3"), new)
    assert (new / "upgrade.json").exists() and actions(new)["cp1"] == "join-control-plane"
    result = replay(new, upgraded(retired(state, "cp1"), "v1.36.3"), ["cp1"])
    assert result.ok, f"{result.failure}\n" + "\n".join(result.lines[-6:])
    assert result.state["nodes"]["cp1"]["kubeletVersion"] == "v1.36.3"
    # without the plan's first action the kubelet would be newer than the control plane: refused
    result = replay(new, retired(state, "cp1"), ["cp1"])
    assert not result.ok and "kubelet version is higher than the control plane version" in result.failure.reason


@rehearsal
def test_a_node_two_minors_ahead_is_refused(ha_running_135, tmp_path):
    from conftest import render_here

    _, out, state = ha_running_135
    new = tmp_path / "out"
    __import__("shutil").copytree(out, new, symlinks=True)
    render_here(versioned(tmp_path, HA, "1.36.3"), new)
    result = replay(new, upgraded(retired(state, "cp1"), "v1.34.10"), ["cp1"])
    assert not result.ok and result.failure.node == "cp1"
    assert "only supports deploying clusters with the control plane version >= 1.35.0" in result.failure.reason


def test_the_plans_configmap_step_sets_the_version_kubeadm_join_reads(tmp_path):
    """The plan's first command, run by bash against a kubectl that serves the kubeadm-config
    ConfigMap as `kubectl get -o yaml` prints it (ClusterConfiguration as a block of YAML in
    data) and keeps what `replace -f -` is given: the ClusterConfiguration in it, parsed, is at
    the new version and otherwise unchanged."""
    import json
    import os

    bash = need("bash")
    out = tmp_path / "out"
    assert run_bakery("render", versioned(tmp_path, HA, "1.35.7"), "--out", out).returncode == 0
    assert run_bakery("render", versioned(tmp_path, HA, "1.36.3"), "--out", out).returncode == 0
    step = json.loads((out / "upgrade.json").read_text())["steps"][0]["actions"][1]
    command = step.split("so that joining control-plane nodes run it: ", 1)[1]
    cluster_config = {"apiVersion": "kubeadm.k8s.io/v1beta4", "kind": "ClusterConfiguration",
                      "kubernetesVersion": "v1.35.7", "controlPlaneEndpoint": "10.10.0.10:6443",
                      "networking": {"podSubnet": "10.244.0.0/16", "serviceSubnet": "10.96.0.0/12"}}
    configmap = {"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": "kubeadm-config", "namespace": "kube-system", "resourceVersion": "412"},
                 "data": {"ClusterConfiguration": yaml.safe_dump(cluster_config)}}
    # kubectl prints a multi-line value as a literal block; PyYAML quotes it with \n escapes:
    # the command must work on both
    block = "".join(f"    {line}\n" for line in configmap["data"]["ClusterConfiguration"].splitlines())
    kubectl_style = yaml.safe_dump({k: v for k, v in configmap.items() if k != "data"}) + \
        f"data:\n  ClusterConfiguration: |\n{block}"
    assert yaml.safe_load(kubectl_style) == configmap
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "kubectl").write_text(
        "#!/bin/sh\n"
        f"case \"$*\" in *'get configmap kubeadm-config -o yaml'*) cat {tmp_path}/cm.yaml ;;\n"
        f"  *'replace -f -'*) cat > {tmp_path}/replaced.yaml ;;\n  *) exit 1 ;;\nesac\n")
    (bindir / "kubectl").chmod(0o755)
    for printed in (kubectl_style, yaml.safe_dump(configmap)):
        (tmp_path / "cm.yaml").write_text(printed)
        r = subprocess.run([bash, "-o", "pipefail", "-c", command], capture_output=True, text=True,
                           env={**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}"})
        assert r.returncode == 0, r.stderr
        replaced = yaml.safe_load((tmp_path / "replaced.yaml").read_text())
        inner = yaml.safe_load(replaced["data"]["ClusterConfiguration"])
        assert inner == {**cluster_config, "kubernetesVersion": "v1.36.3"}
        assert replaced["metadata"] == configmap["metadata"]
