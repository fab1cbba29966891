"""The packer wrapper against the real packer binary (Debian's 1.6.6 runs HCL2 templates with
the null builder and shell-local provisioners): starting, streaming, parsing, failure,
Ctrl-C, and the checks made before packer starts."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from bakery.build import runner as packer_run
from bakery.errors import EnvError

from conftest import LAB, ROOT, need, run_bakery


def template(folder: Path, inline: list[str], extra: str = "", manifest: bool = False) -> Path:
    (folder / "out").mkdir(parents=True, exist_ok=True)  # packer 1.6's manifest makes no folders
    post = textwrap.dedent("""
      post-processor "manifest" {
        output = "${path.root}/out/manifest.json"
        custom_data = { bake_fingerprint = "f00dfeed0001" }
      }
    """) if manifest else ""
    (folder / "build.pkr.hcl").write_text(textwrap.dedent("""
        source "null" "node" {
          communicator = "none"
        }
        build {
          name    = "node"
          sources = ["source.null.node"]
          provisioner "shell-local" {
            inline = %s
          }
        %s
        }
    """) % (json.dumps(inline), post) + extra)
    return folder


@pytest.fixture
def packer():
    return need("packer")


# --- parsing -----------------------------------------------------------------------------------

def test_parse_line_unescapes_commas_and_newlines():
    ev = packer_run.parse_line("1700000000,,ui,message,    node.null.node: a%!(PACKER_COMMA) b\\nc\n")
    assert ev.timestamp == 1700000000 and ev.target == "" and ev.type == "ui"
    assert ev.data == ("message", "    node.null.node: a, b\nc")
    ev = packer_run.parse_line("1700000000,node.null.node,artifact,0,id,Null")
    assert (ev.target, ev.type, ev.data) == ("node.null.node", "artifact", ("0", "id", "Null"))


def test_parse_line_keeps_other_lines_raw():
    ev = packer_run.parse_line("Error: Unsupported argument\n")
    assert ev.type == "raw" and ev.data == ("Error: Unsupported argument",)


@pytest.mark.parametrize("version,constraint,ok", [
    ((1, 6, 6), ">= 1.16.0", False), ((1, 16, 0), ">= 1.16.0", True), ((1, 16, 1), ">= 1.9, < 2.0", True),
    ((2, 0, 0), ">= 1.9, < 2.0", False), ((1, 9, 5), "~> 1.9", True), ((2, 0, 0), "~> 1.9", False),
    ((1, 9, 5), "~> 1.9.2", True), ((1, 10, 0), "~> 1.9.2", False), ((1, 6, 6), "= 1.6.6", True),
    ((1, 6, 6), "!= 1.6.6", False),
])
def test_satisfies(version, constraint, ok):
    assert packer_run.satisfies(version, constraint) is ok


def test_preflight_facts_are_the_rendered_templates(tmp_path):
    """`bakery build` checks the variables without a default and the required Packer version
    from the facts the templates were rendered from; python-hcl2 reads them back from the HCL."""
    import hcl2

    from bakery.image import packer
    from bakery.plan import image_plan
    from bakery.spec.pipeline import load_cluster

    cluster, _ = load_cluster(str(LAB))
    plan = image_plan(cluster)
    files = {f.path: f.content.decode() for f in packer.render_packer(cluster, plan)}
    declared = hcl2.loads(files["packer/variables.pkr.hcl"])["variable"]
    # python-hcl2 keeps the quotes of labels and strings
    without_default = [name.strip('"') for block in declared for name, body in block.items() if "default" not in body]
    assert without_default == [v.name for v in packer.variables(cluster, plan) if not v.has_default]
    assert without_default == ["build_password"]
    block = hcl2.loads(files["packer/plugins.pkr.hcl"])["packer"][0]
    assert block["required_version"] == f'"{packer.required_version()}"'


# --- the real packer ---------------------------------------------------------------------------

def test_build_streams_events_as_they_happen(tmp_path, packer):
    folder = template(tmp_path / "t", ["echo first, comma", "sleep 2", "echo second"], manifest=True)
    arrivals = {}

    def on_event(ev, tracker):
        if ev is not None and ev.type == "ui":
            for word in ("first, comma", "second"):
                if ev.text.endswith(word):
                    arrivals[word] = time.monotonic()

    result = packer_run.build(packer, folder, builders=["null"], on_event=on_event)
    assert result.ok, result.failure()
    assert arrivals["second"] - arrivals["first, comma"] >= 1.5, "events must arrive while packer runs"
    build = result.tracker.builds["node.null.node"]
    assert build.state == "done" and build.last_output == "second"
    arts = result.tracker.artifacts
    assert arts and arts[0].build == "node.null.node" and arts[0].builder_id == "fnoeding.null"
    assert arts[0].id == "Null"
    recorded = packer_run.recorded_builds(folder / "out" / "manifest.json", "f00dfeed0001")
    assert set(recorded) == {"null"} and recorded["null"]["custom_data"]["bake_fingerprint"] == "f00dfeed0001"
    assert packer_run.recorded_builds(folder / "out" / "manifest.json", "other") == {}


def test_only_selects_builders(tmp_path, packer):
    folder = template(tmp_path / "t", ["echo ran"])
    result = packer_run.build(packer, folder, builders=["qemu"])
    # nothing matches: packer builds nothing (and says so), the null build never starts
    assert "node.null.node" not in result.tracker.builds


def test_build_failure(tmp_path, packer):
    folder = template(tmp_path / "t", ["echo about to fail", "exit 3"])
    result = packer_run.build(packer, folder)
    assert not result.ok and result.returncode == 1
    assert "exit status: 3" in result.failure()
    assert result.tracker.builds["node.null.node"].state == "failed"


def test_template_error_is_reported(tmp_path, packer):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "x.pkr.hcl").write_text('source "null" "n" {\n  nonsense = 1\n}\nbuild { sources = ["source.null.n"] }\n')
    result = packer_run.build(packer, folder)
    assert not result.ok
    assert "nonsense" in result.failure() or "Unsupported argument" in result.failure()


INTERRUPT_SCRIPT = """
import sys, time
from pathlib import Path
from bakery.build import runner as packer_run
def on_event(ev, tracker):
    if ev is not None and ev.type == "ui" and ev.text.endswith("started"):
        print("STARTED", flush=True)
try:
    r = packer_run.build(sys.argv[1], Path(sys.argv[2]), on_event=on_event)
    print("FINISHED", r.returncode, flush=True)
except packer_run.Interrupted as exc:
    print("INTERRUPTED", exc.returncode, flush=True)
    sys.exit(130)
"""


def test_ctrl_c_stops_packer_cleanly(tmp_path, packer):
    """SIGINT to our process only (packer runs in its own process group, as under a
    terminal where we forward the one Ctrl-C): packer cancels, its shell-local child is
    gone, and we wait for packer to finish."""
    marker = tmp_path / "still-running"
    folder = template(tmp_path / "t", ["echo started", f"sleep 8; touch {marker}"])
    proc = subprocess.Popen([sys.executable, "-c", INTERRUPT_SCRIPT, packer, str(folder)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    assert proc.stdout.readline().strip() == "STARTED"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 130, (out, err)
    assert out.startswith("INTERRUPTED"), (out, err)
    assert elapsed < 7, "packer must stop without running the provisioner to its end"
    time.sleep(max(0.0, 9 - elapsed))
    assert not marker.exists(), "the provisioner's child must be stopped too"


# --- preflight ---------------------------------------------------------------------------------

def test_preflight_missing_binary(tmp_path, monkeypatch):
    folder = template(tmp_path / "t", ["true"])
    monkeypatch.setenv("BAKERY_PACKER", str(tmp_path / "no-packer"))
    with pytest.raises(EnvError, match="BAKERY_PACKER=.* is not an executable"):
        packer_run.preflight(folder)
    monkeypatch.delenv("BAKERY_PACKER")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EnvError, match="packer is not on PATH"):
        packer_run.preflight(folder)


def test_preflight_version_too_old(tmp_path, packer):
    folder = template(tmp_path / "t", ["true"])
    with pytest.raises(EnvError, match=r"Packer \d+\.\d+\.\d+, the templates need >= 99.0.0"):
        packer_run.preflight(folder, binary=packer, required_version=">= 99.0.0")


def test_preflight_missing_credentials(tmp_path, packer):
    folder = template(tmp_path / "t", ["true"], extra='variable "build_password" {\n  type = string\n}\n')
    need = ["build_password"]
    with pytest.raises(EnvError, match="missing credentials: set PKR_VAR_build_password"):
        packer_run.preflight(folder, binary=packer, env={}, variables=need)
    packer_run.preflight(folder, binary=packer, env={"PKR_VAR_build_password": "s3cret-pass"}, variables=need)
    with pytest.raises(EnvError, match=r"PKR_VAR_proxmox_token \(token\)"):
        packer_run.preflight(folder, binary=packer, env={"PKR_VAR_build_password": "x"}, variables=need,
                             required_env=[("PKR_VAR_proxmox_token", "token")])


def test_packer_sees_the_variable_we_checked(tmp_path, packer):
    folder = template(tmp_path / "t", ["echo pw=${var.build_password}"],
                      extra='variable "build_password" {\n  type = string\n}\n')
    result = packer_run.build(packer, folder, env={**os.environ, "PKR_VAR_build_password": "abc"})
    assert result.ok, result.failure()
    assert result.tracker.builds["node.null.node"].last_output == "pw=abc"


# --- bakery build ------------------------------------------------------------------------------

def test_bakery_build_without_packer_is_one_line_exit_1(tmp_path):
    env = {**os.environ, "BAKERY_PACKER": str(tmp_path / "nope"), "PKR_VAR_build_password": "x" * 10}
    r = run_bakery("build", LAB, "--out", tmp_path / "out", env=env)
    assert r.returncode == 1, r.stdout + r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error")]
    assert len(errors) == 1 and "BAKERY_PACKER" in errors[0]


def test_bakery_build_skips_a_recorded_fingerprint(tmp_path):
    from bakery.plan import image_plan
    from bakery.spec.pipeline import load_cluster

    cluster, _ = load_cluster(str(LAB))
    fp = image_plan(cluster).fingerprint
    images = tmp_path / "out-images"
    images.mkdir()
    (images / "manifest.json").write_text(json.dumps({"builds": [
        {"name": "node", "builder_type": b, "build_time": 1, "artifact_id": f"id-{b}",
         "custom_data": {"bake_fingerprint": fp}} for b in cluster.image.builders]}))
    env = {**os.environ, "BAKERY_PACKER": str(tmp_path / "nope")}  # packer must not be needed
    r = run_bakery("build", LAB, "--out", tmp_path / "out", env=env)
    assert r.returncode == 0, r.stderr
    assert "qemu: " in r.stdout and "built already (id-qemu)" in r.stdout
    # a different fingerprint does not count
    (images / "manifest.json").write_text(json.dumps({"builds": [
        {"builder_type": "qemu", "custom_data": {"bake_fingerprint": "000000000000"}}]}))
    r = run_bakery("build", LAB, "--out", tmp_path / "out", "--only", "qemu", env=env)
    assert r.returncode == 1 and "BAKERY_PACKER" in r.stderr


def test_bakery_build_only_must_be_a_configured_builder(tmp_path):
    text = LAB.read_text().replace("builders: [virtualbox-iso, proxmox-iso, qemu]", "builders: [qemu]")
    (tmp_path / "c.yaml").write_text(text)
    r = run_bakery("build", tmp_path / "c.yaml", "--only", "proxmox-iso", "--out", tmp_path / "out")
    assert r.returncode == 2 and "no such builder" in r.stderr


def test_bakery_build_checks_packer_version_against_templates(tmp_path, packer):
    from bakery.build import runner as pr
    from bakery.image import packer as hcl

    v = pr.packer_version(packer)
    r = run_bakery("build", LAB, "--out", tmp_path / "out", "--only", "qemu",
                   env={**os.environ, "PKR_VAR_build_password": "x" * 10})
    rendered = tmp_path / "out" / "packer"
    need_v = hcl.required_version() if rendered.is_dir() else None
    if need_v is None or pr.satisfies(v, need_v):
        pytest.skip("the rendered templates do not require a newer packer than this machine's")
    assert r.returncode == 1
    assert f"Packer {'.'.join(map(str, v))}, the templates need {need_v}" in r.stderr
