"""The command line as a user meets it: help, version, init, exit codes, packaging."""
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from bakery import __version__

from conftest import LAB, ROOT, run_bakery


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
    r = run_bakery("init", tmp_path / "new", env=home_env(tmp_path / "home"))
    assert r.returncode == 0, r.stderr
    written = tmp_path / "new" / "cluster.yaml"
    assert run_bakery("validate", written).returncode == 0
    # a second init does not overwrite
    r = run_bakery("init", tmp_path / "new")
    assert r.returncode == 2 and "exists" in r.stderr
    assert run_bakery("init", "--force", tmp_path / "new").returncode == 0
    # the commented site settings are valid as written once uncommented
    text = written.read_text()
    assert "  # proxy: {" in text
    written.write_text(text.replace("  # proxy:", "  proxy:").replace("  # mirrors:", "  mirrors:")
                       .replace("  # ntp:", "  ntp:"))
    r = run_bakery("validate", "--strict", written)
    assert r.returncode == 0, r.stderr


def home_env(home, keys: dict[str, bytes] | None = None) -> dict:
    """The environment of a user whose home is `home`, with these files in ~/.ssh."""
    (home / ".ssh").mkdir(parents=True, exist_ok=True)
    for name, content in (keys or {}).items():
        (home / ".ssh" / name).write_bytes(content)
    return {**os.environ, "HOME": str(home)}


def openssh_key(kind: str, comment: str) -> tuple[bytes, bytes]:
    """(private key file, public key line) as ssh-keygen writes them."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    key = ed25519.Ed25519PrivateKey.generate() if kind == "ed25519" else ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return private, public + f" {comment}\n".encode()


def init_render(tmp_path, env) -> tuple[subprocess.CompletedProcess, dict, list[dict]]:
    """bakery init, then validate --strict and render: (init's result, cluster.yaml, users
    of every node's user-data)."""
    import yaml

    r = run_bakery("init", tmp_path / "c", env=env)
    assert r.returncode == 0, r.stderr
    cluster = tmp_path / "c" / "cluster.yaml"
    v = run_bakery("validate", "--strict", cluster, env=env)
    assert v.returncode == 0, v.stderr  # no warning either: a new user's first command succeeds
    out = tmp_path / "out"
    rr = run_bakery("render", "--strict", cluster, "--out", out, env=env)
    assert rr.returncode == 0, rr.stderr
    users = []
    for ud in sorted(out.glob("nodes/*/user-data")):
        doc = yaml.safe_load(ud.read_text())
        users += [u for u in doc["users"] if isinstance(u, dict)]
    assert len(users) == 3
    return r, yaml.safe_load(cluster.read_text()), users


def test_init_without_a_key_passes_strict_and_says_how_to_add_one(tmp_path):
    r, data, users = init_render(tmp_path, home_env(tmp_path / "home"))
    assert "no SSH public key found" in r.stdout and "sshAuthorizedKeys" in r.stdout
    assert data["spec"]["access"]["sshAuthorizedKeys"] == []
    assert all(not u.get("ssh_authorized_keys") for u in users)


def test_init_takes_the_first_public_key_into_every_node(tmp_path):
    private, ed_pub = openssh_key("ed25519", "me@laptop")
    _, ec_pub = openssh_key("ecdsa", "other@laptop")
    env = home_env(tmp_path / "home", {"id_ed25519": private, "id_ed25519.pub": ed_pub,
                                       "id_ecdsa.pub": ec_pub})
    r, data, users = init_render(tmp_path, env)
    line = ed_pub.decode().strip()
    assert "~/.ssh/id_ed25519.pub" in r.stdout and "me@laptop" in r.stdout
    assert data["spec"]["access"]["sshAuthorizedKeys"] == [line]
    # where sshd will read it: cloud-init's users[].ssh_authorized_keys on every node
    assert all(u["ssh_authorized_keys"] == [line] for u in users)


def test_init_never_takes_or_shows_a_private_key(tmp_path):
    """A private key saved under a .pub name is passed over unread into any output; the next
    candidate is taken."""
    private, _ = openssh_key("ed25519", "me@laptop")
    _, ec_pub = openssh_key("ecdsa", "ec@laptop")
    env = home_env(tmp_path / "home", {"id_ed25519.pub": private, "id_ecdsa.pub": ec_pub})
    r, data, _ = init_render(tmp_path, env)
    assert "~/.ssh/id_ed25519.pub does not hold one OpenSSH public key line" in r.stdout
    assert data["spec"]["access"]["sshAuthorizedKeys"] == [ec_pub.decode().strip()]
    body = private.decode().splitlines()[1]
    assert body not in r.stdout + r.stderr and body not in (tmp_path / "c" / "cluster.yaml").read_text()
    assert b"PRIVATE" not in (tmp_path / "c" / "cluster.yaml").read_bytes()


def test_init_pod_network_is_private_and_clear_of_the_others(tmp_path):
    """The rule behind --strict, checked directly: a private pod range clear of the node
    network, the service network and VirtualBox's NAT network; otherwise init's cluster is the
    lab example (which keeps the article's public range, saying why)."""
    import ipaddress

    import yaml

    _, data, _ = init_render(tmp_path, home_env(tmp_path / "home"))
    net = data["spec"]["network"]
    pod = ipaddress.ip_network(net["podCidr"])
    assert pod.is_private and any(pod.subnet_of(ipaddress.ip_network(p))
                                  for p in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))
    for other in (net["nodeCidr"], net["serviceCidr"], "10.0.2.0/24"):
        assert not pod.overlaps(ipaddress.ip_network(other)), other
    lab = yaml.safe_load(LAB.read_text())
    assert lab["spec"]["network"]["podCidr"] == "20.96.0.0/12" and "article" in LAB.read_text()
    for d in (data, lab):
        d["spec"]["network"].pop("podCidr")
        d["spec"].pop("access", None)
    assert data == lab


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


def fresh_venv_seeing_our_dependencies(env_dir: Path) -> tuple[Path, dict]:
    """A new virtual environment whose own site-packages is empty, that sees the packages of
    the interpreter running the tests (through a .pth file naming its site-packages), and the
    environment to run it in (no PYTHONPATH, no VIRTUAL_ENV). `venv --system-site-packages`
    would see the base interpreter's packages instead: inside an active virtual environment
    those are not the ones installed there."""
    import site
    import sysconfig

    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    purelib = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    ours = [*site.getsitepackages(), sysconfig.get_paths()["purelib"]]
    if site.ENABLE_USER_SITE:
        ours.append(site.getusersitepackages())
    # Lines of a .pth name folders to append to sys.path; the .pth files inside those folders
    # (such as an editable install of this checkout) are not processed, so only the wheel
    # installed into the new environment provides `bakery`.
    Path(purelib, "_test_parent_site.pth").write_text("".join(f"{d}\n" for d in dict.fromkeys(ours)))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    return py, env


@pytest.mark.skipif(os.environ.get("BAKERY_SKIP_INSTALL_TEST") == "1", reason="BAKERY_SKIP_INSTALL_TEST=1")
def test_non_editable_install_renders_from_another_folder(tmp_path):
    """pip install . (a wheel, not editable), then bakery render from elsewhere: the schema
    and templates must ship inside the wheel. Passes inside a virtual environment and outside."""
    import tomllib

    env_dir = tmp_path / "venv"
    py, env = fresh_venv_seeing_our_dependencies(env_dir)
    r = subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", "--disable-pip-version-check", str(ROOT)],
                       capture_output=True, text=True, timeout=600, env=env)
    if r.returncode != 0 and ("No matching distribution" in r.stderr or "Could not find" in r.stderr):
        pytest.skip("the build backend cannot be fetched here: " + r.stderr.strip().splitlines()[-1])
    assert r.returncode == 0, r.stderr
    work = tmp_path / "elsewhere"
    work.mkdir()
    r = subprocess.run([env_dir / "bin" / "bakery", "render", str(LAB)], capture_output=True, text=True, cwd=work,
                       env=env)
    assert r.returncode == 0, r.stderr
    assert (work / "outputs" / "lab" / "manifest.json").is_file()
    dist = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["name"]
    probe = ("import bakery, importlib.metadata, pathlib; print(pathlib.Path(bakery.__file__).parent); "
             f"print(importlib.metadata.version({dist!r}))")
    installed, version = subprocess.run([py, "-c", probe], capture_output=True, text=True, cwd=work, env=env,
                                        check=True).stdout.split()
    # the package imported is the wheel's copy in the new environment, not this checkout
    assert Path(installed).is_relative_to(env_dir) and "site-packages" in installed, installed
    assert version == __version__  # the installed distribution has the project's name and version
    r = subprocess.run([env_dir / "bin" / "bakery", "--version"], capture_output=True, text=True, env=env)
    assert r.stdout.strip() == f"bakery {__version__}"
    assert (os.path.isfile(os.path.join(installed, "_data", "schemas", "cluster.schema.json")))
