"""The test suite's own shortcuts answer as the real thing does: cloud_init() as the
installed `cloud-init` command, bakery_forked() as `python -m bakery`, render_here() and the
shared renders as `bakery render`."""
from __future__ import annotations

import json
import subprocess

from conftest import LAB, ROOT, bakery_forked, cloud_init, need, render_here, run_bakery


def _tree(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_cloud_init_runner_answers_as_the_command(renders, tmp_path):
    script = need("cloud-init")
    ud = renders.example("lab") / "nodes" / "k8s-master" / "user-data"
    bad = tmp_path / "bad"
    bad.write_text(ud.read_text().replace("permissions: '0600'", "permissions: 600"))
    for args in (["schema", "-c", str(ud)], ["schema", "-c", str(bad)], ["schema", "-c", str(tmp_path / "none")],
                 ["no-such-subcommand"]):
        real = subprocess.run([script, *args], capture_output=True, text=True, timeout=120, check=False)
        ours = cloud_init(*args)
        assert (ours.returncode, ours.stdout, ours.stderr) == (real.returncode, real.stdout, real.stderr), args
    assert cloud_init("schema", "-c", bad).returncode != 0


def test_net_convert_through_the_runner_writes_what_the_command_writes(renders, tmp_path):
    script = need("cloud-init")
    nc = renders.example("ha") / "nodes" / "cp1" / "network-config"
    for distro, kind in (("ubuntu", "netplan"), ("debian", "networkd"), ("debian", "eni")):
        args = ["devel", "net-convert", "-p", str(nc), "-k", "yaml", "-D", distro, "-O", kind]
        real = subprocess.run([script, *args, "-d", str(tmp_path / f"real-{kind}")], capture_output=True, text=True,
                              check=False, timeout=120)
        ours = cloud_init(*args, "-d", tmp_path / f"ours-{kind}")
        assert real.returncode == ours.returncode == 0, (real.stderr, ours.stderr)
        assert _tree(tmp_path / f"ours-{kind}") == _tree(tmp_path / f"real-{kind}") != {}
    # each command starts from a clean state: the same conversion twice gives the same files
    cloud_init("devel", "net-convert", "-p", nc, "-k", "yaml", "-D", "ubuntu", "-O", "netplan", "-d", tmp_path / "again")
    assert _tree(tmp_path / "again") == _tree(tmp_path / "real-netplan")


def test_an_in_process_render_is_the_commands_render(renders, tmp_path):
    """Same bundle, same files: what render_here() and the shared renders give the tests
    is what `bakery render` writes (the bundle is the one thing a render makes up)."""
    shared = renders.example("lab")
    r = run_bakery("render", LAB, "--out", tmp_path / "cli", "--secrets", shared / "secrets.yaml")
    assert r.returncode == 0, r.stderr
    here = render_here(LAB, tmp_path / "here", secrets=shared / "secrets.yaml")
    cli = _tree(tmp_path / "cli")
    assert cli == _tree(here)
    # the shared tree holds its bundle, and its manifest lists it: all else is the same
    tree = _tree(shared)
    assert {k: v for k, v in cli.items() if k != "manifest.json"} == \
        {k: v for k, v in tree.items() if k not in ("manifest.json", "secrets.yaml")}
    manifest = json.loads(tree["manifest.json"])
    manifest["files"] = [f for f in manifest["files"] if f["path"] != "secrets.yaml"]
    assert json.loads(cli["manifest.json"]) == manifest


def test_forked_bakery_answers_as_the_command(tmp_path):
    bad = ROOT / "tests" / "data" / "bad"
    cases = [("validate", LAB), ("validate", "--output", "json", bad / "duplicate-address.yaml"),
             ("validate", bad / "yaml-bomb.yaml"), ("render", bad / "no-control-plane.yaml"),
             ("validate", tmp_path / "none.yaml"), ("frobnicate",), ("--version",)]
    for args in cases:
        real = run_bakery(*args, cwd=tmp_path)
        ours = bakery_forked(*args, cwd=tmp_path)
        assert (ours.returncode, ours.stdout, ours.stderr) == (real.returncode, real.stdout, real.stderr), args
    assert {bakery_forked(*c, cwd=tmp_path).returncode for c in cases} >= {0, 2}
    assert list(tmp_path.iterdir()) == []
