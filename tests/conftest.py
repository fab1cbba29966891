import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
LAB = EXAMPLES / "lab" / "cluster.yaml"


def run_bakery(*args, cwd=None, env=None, input=None):
    """Run bakery as a user does: a new process, exit code and both streams."""
    return subprocess.run([sys.executable, "-m", "bakery", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, input=input, timeout=300)


def need(tool: str):
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed (.ci/run installs it)")
    return shutil.which(tool)


class _ForkRun:
    """Commands of one Python program, each a fork of one interpreter that imported the
    program once (tests/forkrun.py): the program's own entry point, argv, working folder,
    streams and exit status, without paying its start-up for every file. test_harness.py
    checks that they answer as the installed commands do."""

    def __init__(self, python: list[str], entry: str, preload: list[str]):
        self.cmd = [*python, str(Path(__file__).with_name("forkrun.py")), entry, *preload]
        self.proc = None
        self.lock = threading.Lock()

    def run(self, argv: list[str], *, cwd=None, timeout=120) -> subprocess.CompletedProcess:
        argv = [str(a) for a in argv]
        with self.lock:
            if self.proc is None or self.proc.poll() is not None:
                self.proc = subprocess.Popen(self.cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            # this process's working folder and environment now, as subprocess.run would pass them
            self.proc.stdin.write(json.dumps({"argv": argv, "cwd": str(cwd or os.getcwd()), "env": dict(os.environ),
                                              "timeout": timeout}) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        assert line, "tests/forkrun.py stopped"
        a = json.loads(line)
        return subprocess.CompletedProcess(argv, a["rc"], a["stdout"], a["stderr"])

    def close(self):
        if self.proc is not None:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
            self.proc = None


_RUNNERS: dict[str, _ForkRun] = {}


def _runner(name: str, make) -> _ForkRun:
    if name not in _RUNNERS:
        _RUNNERS[name] = make()
    return _RUNNERS[name]


def cloud_init(*args, timeout=120) -> subprocess.CompletedProcess:
    """`cloud-init ARGS...` (text streams), as subprocess.run would give it."""
    script = need("cloud-init")

    def make():
        # the interpreter of cloud-init's own script (its #! line), and its console-script entry
        python = Path(script).read_text().splitlines()[0].removeprefix("#!").split()
        return _ForkRun(python, "call:cloudinit.cmd.main:main",
                        ["cloudinit.cmd.devel.net_convert", "cloudinit.cmd.devel.parser", "cloudinit.config.schema"])
    return _runner("cloud-init", make).run([script, *args], timeout=timeout)


def bakery_forked(*args, cwd=None) -> subprocess.CompletedProcess:
    """`python -m bakery ARGS...` in a fork of an interpreter that has imported bakery's
    command line and the libraries it needs: for a large corpus of commands (test_validate).
    Variables read at interpreter start-up (PYTHONHASHSEED, PYTHONPATH) are the first call's;
    run_bakery is the fresh interpreter, for everything else."""
    return _runner("bakery", lambda: _ForkRun(
        [sys.executable], "module:bakery",
        ["bakery", "click", "jinja2", "jsonschema", "yaml", "cryptography.x509"])).run(
        ["bakery", *args], cwd=cwd)


def pytest_sessionfinish(session, exitstatus):
    for r in _RUNNERS.values():
        r.close()


def net_convert(path: Path, out: Path, distro: str, kind: str) -> Path:
    """cloud-init's own renderer: network-config at `path` -> `kind` files under `out`."""
    r = cloud_init("devel", "net-convert", "-p", path, "-k", "yaml", "-d", out, "-D", distro, "-O", kind)
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture
def lab_text():
    return LAB.read_text()


# -- rendering for tests that need the files, not the command --------------------------

def render_here(cluster_file, out, *, secrets=None, rotate_token=False) -> Path:
    """`bakery render CLUSTER --out OUT [--secrets S] [--rotate-token]`, in this process: the
    functions the CLI's render command calls (bakery/cli/commands.py), without a new interpreter.
    For tests that need the rendered files; the command itself (exit codes, streams,
    signals, locks) is tested through run_bakery in test_cli, test_reliability and others.
    The one place that names bakery's render entry points."""
    from bakery.render import render_cluster
    from bakery.spec.pipeline import load_cluster

    model, _ = load_cluster(str(cluster_file))
    result = render_cluster(model, out=str(out), secrets_path=None if secrets is None else str(secrets),
                            rotate_token=rotate_token)
    assert result.exit_code == 0, result.messages
    return Path(out)


def tree_digest(root: Path) -> dict:
    """relative path -> (sha256 or "dir", mode) of everything below root."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        out[p.relative_to(root).as_posix()] = (
            hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir", st.st_mode)
    return out


class Renders:
    """Each example, and each cluster text a test names, rendered once per session on first
    use. The trees are shared and read-only: a test that changes, adds or runs something
    that writes into a tree copies it first (`copy`). At the end of the session every tree
    is compared with what was rendered, so a test that writes into one fails."""

    def __init__(self, base: Path):
        self.base = base
        self._by_text: dict[str, Path] = {}
        self._digests: dict[Path, dict] = {}
        self._examples = {p.read_text(): p for p in EXAMPLES.glob("*/cluster.yaml")}

    def example(self, name: str) -> Path:
        """The output tree of examples/<name>/cluster.yaml."""
        return self.text((EXAMPLES / name / "cluster.yaml").read_text())

    def text(self, text: str) -> Path:
        """The output tree of a cluster.yaml with this text (an example's text renders the
        example's own file)."""
        if text not in self._by_text:
            root = self.base / f"c{len(self._by_text)}"
            root.mkdir()
            src = self._examples.get(text)
            if src is None:
                src = root / "cluster.yaml"
                src.write_text(text)
            out = render_here(src, root / "out")
            self._digests[out] = tree_digest(out)
            self._by_text[text] = out
        return self._by_text[text]

    def copy(self, out: Path, dest: Path) -> Path:
        """A private copy of a shared tree, modes kept, for a test that writes into it."""
        shutil.copytree(out, dest, symlinks=True)
        return dest

    def changed(self) -> list[str]:
        return [str(out) for out, digest in self._digests.items() if tree_digest(out) != digest]


@pytest.fixture(scope="session")
def renders(tmp_path_factory):
    r = Renders(tmp_path_factory.mktemp("renders"))
    yield r
    assert not r.changed(), "a test wrote into a shared render; copy it first (renders.copy)"
