import shutil
import subprocess
import sys
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


def net_convert(path: Path, out: Path, distro: str, kind: str) -> Path:
    """cloud-init's own renderer: network-config at `path` -> `kind` files under `out`."""
    need("cloud-init")
    r = subprocess.run(["cloud-init", "devel", "net-convert", "-p", str(path), "-k", "yaml", "-d", str(out),
                        "-D", distro, "-O", kind], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture
def lab_text():
    return LAB.read_text()
