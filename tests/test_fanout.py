"""Renders with every core (issue 22, bakery/output/fanout.py): the nodes are shared between
the render's process and forked workers, and nothing about the result may tell how many
there were: the same tree byte for byte, mode for mode, the same manifest; a worker that fails
or dies fails the render as a whole and changes nothing."""
from __future__ import annotations

import errno
import os
import shutil
import signal
from pathlib import Path

import pytest
from test_render_state import tree, without_inodes

from bakery import render as render_mod
from bakery.errors import EnvError, InputError
from bakery.output import fanout

from clusters import make_cluster
from conftest import run_bakery

FORKED: list[int] = []


@pytest.fixture(autouse=True)
def forked(monkeypatch):
    """The pids fan_out forks, in FORKED (the test process has other children: the suite's
    command runner)."""
    real = os.fork
    FORKED.clear()

    def fork():
        pid = real()
        if pid:
            FORKED.append(pid)
        return pid

    monkeypatch.setattr(fanout.os, "fork", fork)


def _no_children_left() -> bool:
    """Every worker fan_out forked has been reaped (none running, none a zombie)."""
    for pid in FORKED:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            continue
        return False
    return True


# --- fan_out itself --------------------------------------------------------------------------

@pytest.mark.parametrize("jobs", [1, 2, 3, 7])
@pytest.mark.parametrize("count", [1, 2, 10, 33])
def test_results_come_back_in_the_items_order(jobs, count):
    items = list(range(count))
    got = list(fanout.fan_out(items, lambda i: (i * i, os.getpid()), jobs))
    assert [r for r, _ in got] == [i * i for i in items]
    pids = {pid for _, pid in got}
    assert len(pids) == min(jobs, count), "each share ran in its own process"
    assert pids & {os.getpid()}, "this process takes a share too"
    assert _no_children_left()


def test_a_childs_exception_is_raised_here_as_it_was():
    def work(i):
        if i == 3 and os.getpid() != parent:
            raise OSError(errno.ENOSPC, "No space left on device", f"/out/nodes/n{i}/user-data")
        return i

    parent = os.getpid()
    with pytest.raises(OSError) as caught:
        list(fanout.fan_out(list(range(8)), work, 2))
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == "/out/nodes/n3/user-data"
    assert _no_children_left()


def test_a_child_that_dies_is_an_environment_error():
    def work(i):
        if os.getpid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)
        return i

    parent = os.getpid()
    with pytest.raises(EnvError, match=r"killed by signal 9 before it finished"):
        list(fanout.fan_out(list(range(4)), work, 2))
    assert _no_children_left()


def test_an_error_here_stops_every_child(tmp_path):
    """The parent's own share fails while children run: they are killed and reaped before the
    error goes on, so none writes on into a tree that is being removed."""
    marker = tmp_path / "late"

    def work(i):
        if os.getpid() == parent:
            raise ValueError("parent's share failed")
        import time
        time.sleep(3)
        marker.write_text("a child went on")
        return i

    parent = os.getpid()
    with pytest.raises(ValueError, match="parent's share failed"):
        list(fanout.fan_out(list(range(4)), work, 2))
    assert _no_children_left()
    import time
    time.sleep(3.5)
    assert not marker.exists()


def test_a_child_never_runs_the_parents_cleanup(tmp_path):
    """A child ends with os._exit: the `finally` around fan_out runs once, in the parent."""
    log = tmp_path / "log"
    try:
        list(fanout.fan_out(list(range(6)), lambda i: i, 3))
    finally:
        with open(log, "a") as f:
            f.write(f"{os.getpid()}\n")
    assert log.read_text() == f"{os.getpid()}\n"


def test_unpicklable_results_fail_clearly():
    with pytest.raises(EnvError, match="a render worker failed"):
        list(fanout.fan_out(list(range(4)), lambda i: (lambda: i), 2))


def test_jobs(monkeypatch):
    monkeypatch.delenv(fanout.JOBS_ENV, raising=False)
    monkeypatch.setattr(fanout, "cores", lambda: 2)
    assert fanout.jobs_for(3) == 1, "a few nodes never fork"
    assert fanout.jobs_for(fanout.MIN_ITEMS * 2) == 2
    assert fanout.jobs_for(5000) == 2, "no more than the cores"
    monkeypatch.setenv(fanout.JOBS_ENV, "1")
    assert fanout.jobs_for(5000) == 1
    monkeypatch.setenv(fanout.JOBS_ENV, "4")
    assert fanout.jobs_for(3) == 3 and fanout.jobs_for(5000) == 4, "asked for: up to one item each"
    for bad in ("0", "-1", "two", "1.5"):
        monkeypatch.setenv(fanout.JOBS_ENV, bad)
        with pytest.raises(InputError, match="BAKERY_JOBS"):
            fanout.jobs_for(10)


# --- through render ----------------------------------------------------------------------------

def snapshot(out: Path) -> dict:
    """Every file's mode and content hash, every link's text, every folder's mode."""
    return without_inodes(tree(out))


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """A 150-node cluster (three control-plane nodes, every builder) rendered once without
    workers, and its bundle, for renders with workers to be compared with."""
    tmp = tmp_path_factory.mktemp("fanout")
    src = tmp / "cluster.yaml"
    src.write_text(make_cluster(150, name="wide"))
    out = tmp / "serial"
    r = run_bakery("render", src, "--out", out, env={**os.environ, fanout.JOBS_ENV: "1"})
    assert r.returncode == 0, r.stderr
    return src, out, r.stdout.split(" to ")[0]  # "wrote N files"


@pytest.mark.parametrize("jobs", ["2", "3", "8"])
def test_the_tree_is_the_same_with_any_number_of_workers(big, tmp_path, jobs):
    src, serial, wrote = big
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(serial / "secrets.yaml", out / "secrets.yaml")  # the same bundle
    r = run_bakery("render", src, "--out", out, env={**os.environ, fanout.JOBS_ENV: jobs})
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(wrote + " to "), (wrote, r.stdout)
    assert snapshot(out) == snapshot(serial)
    assert run_bakery("render", "--check", src, "--out", out).returncode == 0


def test_a_failing_worker_changes_nothing(big, tmp_path, monkeypatch):
    """A node that fails in a worker (a full disk, say) fails the render: the folder keeps its
    previous tree, no temporary tree is left, and the error is the worker's."""
    from bakery.spec import pipeline

    src, serial, _ = big
    out = tmp_path / "out"
    shutil.copytree(serial, out, symlinks=True)
    before = snapshot(out)
    parent = os.getpid()
    real = render_mod._Parts.node

    def node(self, node_plan):
        if os.getpid() != parent and node_plan.node.name.endswith("7"):
            raise OSError(errno.ENOSPC, "No space left on device", str(out / "nodes" / node_plan.node.name))
        return real(self, node_plan)

    monkeypatch.setattr(render_mod._Parts, "node", node)
    monkeypatch.setenv(fanout.JOBS_ENV, "2")
    cluster, _ = pipeline.load_cluster(str(src))
    with pytest.raises(OSError) as caught:
        render_mod.render_cluster(cluster, out=str(out), rotate_token=True)  # would change every seed
    assert caught.value.errno == errno.ENOSPC
    assert snapshot(out) == before
    assert sorted(p.name for p in out.parent.iterdir() if p.name.startswith(".out.")) == [".out.lock"]
    assert _no_children_left()


def test_workers_die_with_a_render_killed_outright(tmp_path):
    """SIGKILL (or a SIGTERM, which Python does not handle) ends the render's process at once:
    its workers end with it instead of writing on."""
    import subprocess
    import sys
    import time

    pids = tmp_path / "pids"
    script = (f"import os, time\nfrom bakery.output import fanout\n"
              f"def work(i):\n    open({str(pids)!r}, 'a').write(f'{{os.getpid()}}\\n'); time.sleep(60)\n"
              f"list(fanout.fan_out(list(range(3)), work, 3))\n")
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (not pids.exists() or len(pids.read_text().split()) < 3):
        time.sleep(0.05)
    workers = [int(p) for p in pids.read_text().split() if int(p) != proc.pid]
    assert len(workers) == 2
    proc.send_signal(signal.SIGTERM)
    proc.wait(10)
    deadline = time.monotonic() + 10
    alive = workers
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if Path(f"/proc/{p}").exists()
                 and Path(f"/proc/{p}/stat").read_text().split()[2] != "Z"]
        time.sleep(0.05)
    assert not alive, "workers outlived the render"


def test_check_with_workers_finds_what_changed(big, tmp_path):
    """`render --check` compares each node's files where they are made (in a worker too): an
    edit, a removal and an addition anywhere in the nodes are all reported."""
    src, serial, _ = big
    out = tmp_path / "out"
    shutil.copytree(serial, out, symlinks=True)
    env = {**os.environ, fanout.JOBS_ENV: "3"}
    assert run_bakery("render", "--check", src, "--out", out, env=env).returncode == 0
    nodes = sorted(p.name for p in (out / "nodes").iterdir())
    edited, removed = out / "nodes" / nodes[-1] / "network-config", out / "nodes" / nodes[-2] / "meta-data"
    edited.write_text(edited.read_text() + "# hand edit\n")
    removed.unlink()
    (out / "nodes" / nodes[-3] / "extra").write_text("x")
    r = run_bakery("render", "--check", src, "--out", out, env=env)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "3 files differ" in r.stdout, r.stdout
    assert f"~ nodes/{nodes[-1]}/network-config" in r.stdout
    assert f"+ nodes/{nodes[-2]}/meta-data" in r.stdout and f"- nodes/{nodes[-3]}/extra" in r.stdout


# --- what a review found (issue 22) --------------------------------------------------------

def _run_script(code: str, timeout: float = 60):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"})


def test_an_interrupt_of_the_render_alone_never_hangs_on_a_childs_pipe():
    """SIGINT to the render's process only (kill -INT, a wrapper), while it reads the first
    worker's results: that worker may be blocked writing more than a pipe holds, and no sibling
    may hold its pipe open, or neither would ever end."""
    code = """
import os, signal, time
from bakery.output import fanout
parent = os.getpid()
def work(i):
    if os.getpid() == parent and i == 0:
        signal.setitimer(signal.ITIMER_REAL, 1.0)
    if os.getpid() != parent:
        time.sleep(2)
    return b"x" * 200_000
signal.signal(signal.SIGALRM, lambda *a: os.kill(parent, signal.SIGINT))
try:
    list(fanout.fan_out(list(range(3)), work, 3))
except KeyboardInterrupt:
    try:
        os.waitpid(-1, os.WNOHANG)
        print("children left")
    except ChildProcessError:
        print("interrupted, no child left")
"""
    r = _run_script(code, timeout=30)
    assert r.stdout.strip() == "interrupted, no child left", r.stdout + r.stderr


def test_an_interrupt_right_after_the_fork_never_runs_the_callers_code():
    """A worker interrupted before its share starts (here: while the share is read, slowed
    down) ends there: the caller's except and finally run once, in the render's process, and
    what it printed before the fork is printed once."""
    code = """
import os, signal, time, threading
from collections.abc import Sequence
from bakery.output import fanout
parent = os.getpid()
class Plans(Sequence):
    def __len__(self): return 4
    def __getitem__(self, i):
        if os.getpid() != parent:
            time.sleep(0.5)
        return i
print("rendering...")
def hit():
    time.sleep(0.2)
    for pid in os.popen(f"pgrep -P {parent}").read().split():
        os.kill(int(pid), signal.SIGINT)
threading.Thread(target=hit).start()
try:
    list(fanout.fan_out(Plans(), lambda i: i, 2))
except BaseException as exc:
    print(f"caught in {'parent' if os.getpid() == parent else 'child'}: {type(exc).__name__}")
finally:
    print(f"finally in {'parent' if os.getpid() == parent else 'child'}")
"""
    r = _run_script(code)
    assert r.stdout.splitlines() == ["rendering...", "caught in parent: EnvError", "finally in parent"], r.stdout


def test_an_exception_that_cannot_be_rebuilt_is_named():
    """An exception class whose __init__ takes other arguments than its args pickles but does
    not unpickle: the parent gets an EnvError with its name and message, not "a worker died"."""
    from bakery import fsafe

    def work(i):
        if os.getpid() != parent:
            raise fsafe.NotRegular(Path("/out/nodes/n1/user-data"), "a named pipe")
        return i

    parent = os.getpid()
    with pytest.raises(EnvError, match=r"a render worker failed: NotRegular: .*user-data"):
        list(fanout.fan_out(list(range(4)), work, 2))
    assert _no_children_left()


def test_jobs_in_other_digits_are_refused(monkeypatch):
    for odd in ("²", "٣", "１"):
        monkeypatch.setenv(fanout.JOBS_ENV, odd)
        with pytest.raises(InputError, match="BAKERY_JOBS"):
            fanout.jobs_for(10)
