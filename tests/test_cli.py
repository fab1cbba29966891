"""The command line as a user meets it: help, version, init, exit codes, packaging."""
import os
import subprocess
import sys
import venv

import pytest

from conftest import LAB, ROOT, run_bakery
from bakery import __version__


def test_version_and_help():
    r = run_bakery("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"bakery {__version__}"
    for args in (["-h"], ["--help"], ["validate", "-h"], ["render", "--help"], ["schema", "-h"], ["init", "-h"]):
        r = run_bakery(*args)
        assert r.returncode == 0 and "Usage:" in r.stdout, args


def test_version_imports_nothing_heavy():
    code = ("import sys; sys.argv=['bakery','--version']\n"
            "from bakery import cli\n"
            "try:\n    cli.main()\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('jsonschema','jinja2','cryptography','yaml') if m in sys.modules]\n"
            "print('HEAVY', heavy)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert "HEAVY []" in r.stdout, r.stdout + r.stderr


def test_unknown_command_is_usage_error():
    r = run_bakery("frobnicate")
    assert r.returncode == 2 and "No such command" in r.stderr


def test_init_writes_a_valid_example(tmp_path):
    r = run_bakery("init", tmp_path / "new")
    assert r.returncode == 0, r.stderr
    written = tmp_path / "new" / "cluster.yaml"
    assert run_bakery("validate", written).returncode == 0
    # a second init does not overwrite
    r = run_bakery("init", tmp_path / "new")
    assert r.returncode == 2 and "exists" in r.stderr
    assert run_bakery("init", "--force", tmp_path / "new").returncode == 0


def test_init_example_matches_the_lab_example():
    body = lambda text: [ln for ln in text.splitlines() if "yaml-language-server" not in ln]  # noqa: E731
    assert body((ROOT / "templates/init/cluster.yaml").read_text()) == body(LAB.read_text())


def test_render_default_out_is_outputs_name_under_cwd(tmp_path):
    r = run_bakery("render", LAB, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "outputs" / "lab" / "manifest.json").is_file()


def test_render_strict_fails_on_warning(tmp_path):
    r = run_bakery("render", "--strict", LAB, cwd=tmp_path)
    assert r.returncode == 2 and "pod-cidr-public" in r.stderr
    assert not (tmp_path / "outputs").exists()


def test_unwritable_output_is_an_environment_error(tmp_path):
    if os.geteuid() == 0:
        blocker = tmp_path / "file"
        blocker.write_text("x")
        out = blocker / "sub"  # a path under a regular file cannot be created, even by root
    else:  # pragma: no cover
        tmp_path.chmod(0o500)
        out = tmp_path / "out"
    r = run_bakery("render", LAB, "--out", out)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr and "error" in r.stderr


@pytest.mark.skipif(os.environ.get("BAKERY_SKIP_INSTALL_TEST") == "1", reason="BAKERY_SKIP_INSTALL_TEST=1")
def test_non_editable_install_renders_from_another_folder(tmp_path):
    """pip install . (a wheel, not editable), then bakery render from elsewhere: the schema
    and templates must ship inside the wheel."""
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, system_site_packages=True).create(env_dir)
    py = env_dir / "bin" / "python"
    r = subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", "--disable-pip-version-check", str(ROOT)],
                       capture_output=True, text=True, timeout=600)
    if r.returncode != 0 and ("No matching distribution" in r.stderr or "Could not find" in r.stderr):
        pytest.skip("the build backend cannot be fetched here: " + r.stderr.strip().splitlines()[-1])
    assert r.returncode == 0, r.stderr
    work = tmp_path / "elsewhere"
    work.mkdir()
    r = subprocess.run([env_dir / "bin" / "bakery", "render", str(LAB)], capture_output=True, text=True, cwd=work)
    assert r.returncode == 0, r.stderr
    assert (work / "outputs" / "lab" / "manifest.json").is_file()
    installed = subprocess.run([py, "-c", "import bakery, pathlib; print(pathlib.Path(bakery.__file__).parent)"],
                               capture_output=True, text=True, cwd=work).stdout.strip()
    assert "site-packages" in installed
    assert (os.path.isfile(os.path.join(installed, "_data", "schemas", "cluster.schema.json")))
