"""Use every core for work that is the same function over many items (a render's nodes).

fan_out(items, work, jobs) runs work(item) for every item and yields the results in the
items' order, whatever process computed them. The items are shared out round-robin between
this process and jobs - 1 forked children: a child inherits everything prepared so far (the
model, the bundle, caches) without pickling any of it, runs its share, and sends its results
back pickled through a pipe. work() may write files (into a render's private new tree); what
it returns is all the parent learns.

A child never runs the parent's code after the fork returns: signals are held over the fork
and released inside the child's own `try`, which ends with os._exit, so no `finally`, lock
release, atexit hook or buffered output of the parent runs twice; it holds no other child's
pipe (one interrupted child's results can never block it); and it dies with the parent (a
render killed outright leaves no worker writing on). An
exception in a child is re-raised in the parent (an OSError keeps its errno and file name),
a child that dies is an EnvError, and when anything fails (or Ctrl-C) the parent kills and
reaps every child before the error goes on, so nothing writes into a tree being removed.

How many jobs: jobs_for(n), from the cores this process may run on, BAKERY_JOBS if set (1:
no fork, the same bytes by construction), and at least MIN_ITEMS items per job (a fork costs
milliseconds; a render of a few nodes never forks).
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import pickle
import signal
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from ..errors import EnvError, InputError

T = TypeVar("T")
R = TypeVar("R")

MIN_ITEMS = 32  # per job
JOBS_ENV = "BAKERY_JOBS"


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def jobs_for(items: int) -> int:
    """How many processes to share `items` between (1: this one alone)."""
    wanted = os.environ.get(JOBS_ENV, "").strip()
    if wanted:
        if not (wanted.isascii() and wanted.isdigit()) or int(wanted) < 1:
            raise InputError(f"{JOBS_ENV}={wanted!r}: give a whole number of processes, 1 or more (1: no "
                             "worker processes)", check="jobs")
        limit = int(wanted)
    else:
        limit = cores()
    return max(1, min(limit, items // MIN_ITEMS if not wanted else items))


def fan_out(items: Sequence[T], work: Callable[[T], R], jobs: int) -> Iterator[R]:
    """work(item) for every item, the results in the items' order (see the module's doc)."""
    jobs = max(1, min(jobs, len(items)))
    if jobs == 1:
        for item in items:
            yield work(item)
        return
    parent = os.getpid()
    running: list[tuple[int, int]] = []  # (pid, read end) of children not reaped yet
    theirs = []
    try:
        for k in range(1, jobs):
            read, write = os.pipe()
            held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
            try:
                try:
                    pid = os.fork()
                except OSError:  # no process to be had: this render's own error
                    os.close(read)
                    os.close(write)
                    raise
                if pid == 0:  # the child: never returns, whatever happens
                    try:
                        os.close(read)
                        for _, sibling in running:  # the siblings' read ends: theirs alone
                            os.close(sibling)
                        _die_with(parent)
                        signal.pthread_sigmask(signal.SIG_SETMASK, held)
                        _child(write, [items[i] for i in range(k, len(items), jobs)], work)
                    finally:
                        os._exit(3)
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, held)
            os.close(write)
            running.append((pid, read))
        mine = [work(items[i]) for i in range(0, len(items), jobs)]
        while running:
            pid, read = running.pop(0)
            theirs.append(_collect(pid, read))  # reaps it, whatever it sent
    finally:
        for pid, read in running:  # an error or Ctrl-C: stop every child before going on
            _stop(pid, read)
    shares = [mine, *theirs]
    for i in range(len(items)):
        yield shares[i % jobs][i // jobs]


def _die_with(parent: int) -> None:
    """A child is killed when the render's process dies (a SIGKILL, a SIGTERM with no
    handler), rather than going on alone: prctl(PR_SET_PDEATHSIG), Linux."""
    with contextlib.suppress(OSError, AttributeError):  # not Linux: nothing to do
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG, prctl(2)
    if os.getppid() != parent:  # it died before prctl
        os._exit(1)


def _child(write: int, share: list, work: Callable) -> None:
    code = 0
    payload: tuple[str, Any]
    try:
        try:
            payload = ("ok", [work(item) for item in share])
        except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
            code = 1
            payload = ("error", _portable(exc))
        try:
            data = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # noqa: BLE001 - a result that cannot be pickled
            code = 1
            data = pickle.dumps(("error", EnvError(f"a render worker failed: {payload[1]!r}")))
        with os.fdopen(write, "wb") as out:
            out.write(data)
    except BaseException:  # noqa: BLE001 - the parent sees a child that died
        code = 2
    finally:
        os._exit(code)


def _portable(exc: BaseException) -> BaseException:
    """The exception itself if the parent can rebuild it from a pickle (an OSError keeps its
    errno and file name); else an EnvError naming it (a class whose __init__ takes other
    arguments than its args cannot be unpickled)."""
    try:
        pickle.loads(pickle.dumps(exc, protocol=pickle.HIGHEST_PROTOCOL))
        return exc
    except Exception:  # noqa: BLE001
        return EnvError(f"a render worker failed: {type(exc).__name__}: {exc}")


def _collect(pid: int, read: int) -> list:
    """Read a child's results to the end of its pipe, then reap it."""
    try:
        with os.fdopen(read, "rb") as pipe:
            data = pipe.read()
    except BaseException:  # interrupted: the child may be blocked on a pipe nobody reads
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    _, status = os.waitpid(pid, 0)
    try:
        kind, value = pickle.loads(data)
    except Exception:  # noqa: BLE001 - nothing (or half) was sent: the child died
        code = os.waitstatus_to_exitcode(status)
        how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
        raise EnvError(f"a render worker (pid {pid}) {how} before it finished; nothing was changed, "
                       "render again (BAKERY_JOBS=1 renders without workers)") from None
    if kind == "error":
        raise value
    return value


def _stop(pid: int, read: int) -> None:
    """Kill and reap a child not reaped yet (so its pid cannot have been reused)."""
    os.close(read)
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):  # pragma: no cover - gone already
        pass
