"""A thin wrapper around the packer binary (issue 5): no third-party wrapper, only subprocess.

It runs `packer init` and `packer build -machine-readable` in the rendered packer/ folder and
turns packer's machine-readable stream into events:

    timestamp,target,type,data...   e.g.  1700000000,,ui,say,==> qemu.node: Waiting for SSH...

Commas inside data are written as `%!(PACKER_COMMA)` and newlines as a literal `\\n`.
A Ctrl-C is passed to packer's whole process group as SIGINT (what a terminal does: packer's
parent process alone ignores it) and packer is given the time it needs to remove its VM.
"""
from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import EnvError

COMMA = "%!(PACKER_COMMA)"
INIT_SINCE = (1, 7, 0)  # `packer init` appeared in 1.7.0


# --- the machine-readable stream -------------------------------------------------------------

@dataclass(frozen=True)
class Event:
    timestamp: int
    target: str  # the build (e.g. "node.qemu.node"), or "" for messages of packer itself
    type: str  # ui, artifact, artifact-count, error, error-count, version, ...; "raw" for other lines
    data: tuple[str, ...]

    @property
    def ui_level(self) -> str | None:
        """say, message or error for ui events."""
        return self.data[0] if self.type == "ui" and self.data else None

    @property
    def text(self) -> str:
        if self.type == "ui":
            return self.data[1] if len(self.data) > 1 else ""
        return ",".join(self.data)


def unescape(value: str) -> str:
    return value.replace(COMMA, ",").replace("\\n", "\n").replace("\\r", "\r")


def parse_line(line: str) -> Event:
    """One line of `packer -machine-readable` output. A line that is not in that form (a
    plugin's stray output, a panic) comes back as a "raw" event holding the line."""
    line = line.rstrip("\r\n")
    parts = line.split(",")
    if len(parts) >= 3 and parts[0].isdigit() and parts[2]:
        return Event(int(parts[0]), parts[1], parts[2], tuple(unescape(p) for p in parts[3:]))
    return Event(0, "", "raw", (line,))


@dataclass
class Artifact:
    build: str
    index: int
    builder_id: str = ""
    id: str = ""
    string: str = ""
    files: list[str] = field(default_factory=list)


_STEP = re.compile(r"^==> (?P<build>[^:\s]+): (?P<step>.*)$", re.S)
_OUTPUT = re.compile(r"^    (?P<build>[^:\s]+): (?P<line>.*)$", re.S)
_FINISHED = re.compile(r"^Build '(?P<build>[^']+)' finished")
_ERRORED = re.compile(r"^Build '(?P<build>[^']+)' errored(?: after [^:]*)?: (?P<error>.*)$", re.S)


@dataclass
class BuildProgress:
    name: str
    started: float
    step: str = "starting"
    last_output: str = ""
    state: str = "running"  # running | done | failed | cancelled
    ended: float | None = None
    error: str = ""

    def elapsed(self, now: float | None = None) -> float:
        return (self.ended or now or time.monotonic()) - self.started


class Tracker:
    """Folds events into what a person wants to see: per build its current step, its
    state and time, and at the end its artifacts and errors."""

    def __init__(self) -> None:
        self.builds: dict[str, BuildProgress] = {}
        self.artifacts: list[Artifact] = []
        self.errors: list[str] = []  # packer's "error" records (one per failed build)
        self.ui_errors: list[str] = []  # other error messages (e.g. template errors)
        self.cancelled = False
        self.version: str | None = None

    def _build(self, name: str) -> BuildProgress:
        if name not in self.builds:
            self.builds[name] = BuildProgress(name, time.monotonic())
        return self.builds[name]

    def feed(self, ev: Event) -> None:
        if ev.type == "version" and ev.data:
            self.version = ev.data[0]
        elif ev.type == "ui":
            text = ev.text.strip("\n")
            if m := _STEP.match(text):
                self._build(m["build"]).step = m["step"]
            elif m := _OUTPUT.match(text):
                self._build(m["build"]).last_output = m["line"]
            elif m := _FINISHED.match(text):
                b = self._build(m["build"])
                if b.state == "running":
                    b.state, b.ended = "done", time.monotonic()
            elif m := _ERRORED.match(text):
                b = self._build(m["build"])
                b.state, b.ended, b.error = "failed", time.monotonic(), m["error"].strip()
            elif "interrupt" in text.lower() and ev.ui_level == "error":
                self.cancelled = True
                for b in self.builds.values():
                    if b.state == "running":
                        b.state = "cancelled"
            elif ev.ui_level == "error" and text.strip() and not text.lstrip().startswith(("==>", "-->")):
                self.ui_errors.append(text)
        elif ev.type == "error" and ev.data:
            self.errors.append(ev.text)
            if ev.target:
                b = self._build(ev.target)
                b.state, b.error = "failed", b.error or ev.text
        elif ev.type == "artifact" and len(ev.data) >= 2 and ev.data[0].isdigit():
            index, kind, rest = int(ev.data[0]), ev.data[1], ev.data[2:]
            art = next((a for a in self.artifacts if a.build == ev.target and a.index == index), None)
            if art is None:
                art = Artifact(ev.target, index)
                self.artifacts.append(art)
            if kind == "builder-id" and rest:
                art.builder_id = rest[0]
            elif kind == "id" and rest:
                art.id = rest[0]
            elif kind == "string" and rest:
                art.string = ",".join(rest)
            elif kind == "file" and len(rest) >= 2:
                art.files.append(",".join(rest[1:]))


# --- versions and constraints ----------------------------------------------------------------

def parse_version(text: str) -> tuple[int, ...] | None:
    m = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    if not m:
        return None
    return tuple(int(x or 0) for x in m.groups())


def satisfies(version: tuple[int, ...], constraint: str) -> bool:
    """Packer's (HashiCorp's) version constraints: comma-separated `=`, `!=`, `>`, `>=`, `<`,
    `<=` and `~>` (pessimistic: `~> 1.9` means >= 1.9, < 2.0; `~> 1.9.2` means >= 1.9.2, < 1.10)."""
    v = (tuple(version) + (0, 0, 0))[:3]
    for part in constraint.split(","):
        part = part.strip()
        if not part:
            continue
        m = re.fullmatch(r"(~>|>=|<=|!=|=|>|<)?\s*v?(\d+(?:\.\d+){0,2})(?:-[\w.]+)?", part)
        if not m:
            raise ValueError(f"unknown version constraint {part!r}")
        op, raw = m.group(1) or "=", m.group(2)
        nums = [int(x) for x in raw.split(".")]
        want = tuple((nums + [0, 0, 0])[:3])
        if op == "~>":
            if len(nums) == 1:
                upper: tuple[int, ...] = (nums[0] + 1, 0, 0)
            else:
                head = nums[:-1]
                head[-1] += 1
                upper = tuple((head + [0, 0, 0])[:3])
            ok = want <= v < upper
        else:
            ok = {"=": v == want, "!=": v != want, ">": v > want, ">=": v >= want,
                  "<": v < want, "<=": v <= want}[op]
        if not ok:
            return False
    return True


def _hcl_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.pkr.hcl"))


def _set_in_var_files(folder: Path) -> set[str]:
    names = set()
    for f in sorted(folder.glob("*.auto.pkrvars.hcl")):
        names |= set(re.findall(r"^\s*([A-Za-z_][\w-]*)\s*=", f.read_text(), re.M))
    return names


# --- finding and checking packer ---------------------------------------------------------------

def find_packer() -> str:
    explicit = os.environ.get("BAKERY_PACKER")
    path = shutil.which(explicit or "packer")
    if path is None:
        where = f"BAKERY_PACKER={explicit} is not an executable" if explicit else "packer is not on PATH"
        raise EnvError(f"{where}; install Packer (HashiCorp's release, or your distribution's package) "
                       "or point BAKERY_PACKER at it")
    return path


def packer_version(binary: str) -> tuple[int, ...]:
    try:
        r = subprocess.run([binary, "version"], capture_output=True, text=True, timeout=60,
                           env={**os.environ, "CHECKPOINT_DISABLE": "1"})
    except OSError as exc:
        raise EnvError(f"cannot run {binary}: {exc.strerror}; check the file and its permissions") from None
    v = parse_version(r.stdout)
    if r.returncode != 0 or v is None:
        raise EnvError(f"{binary} version failed ({r.stdout.strip() or r.stderr.strip()}); reinstall Packer")
    return v


def preflight(folder: Path, *, binary: str | None = None, env: Mapping[str, str] | None = None,
              required_env: Iterable[tuple[str, str]] = (), required_version: str | None = None,
              variables: Iterable[str] = ()) -> tuple[str, tuple[int, ...]]:
    """Check everything packer needs before starting it: the binary, its version against the
    templates' required_version, and every variable without a default (PKR_VAR_<name>).
    required_version and variables are the facts the templates were rendered from
    (image.packer.required_version() and the variables with no default), never re-read from
    the HCL. required_env: extra (variable, what it is) pairs that must be set and non-empty.
    Raises EnvError with one line saying what to do."""
    env = os.environ if env is None else env
    if not _hcl_files(folder) and not list(folder.glob("*.json")):
        raise EnvError(f"no Packer templates in {folder}; run `bakery render` first")
    binary = binary or find_packer()
    version = packer_version(binary)
    need = required_version
    if need and not satisfies(version, need):
        have = ".".join(map(str, version))
        raise EnvError(f"{binary} is Packer {have}, the templates need {need}; install a newer Packer "
                       "or point BAKERY_PACKER at one")
    set_in_files = _set_in_var_files(folder)
    missing = [f"PKR_VAR_{n}" for n in variables
               if not env.get(f"PKR_VAR_{n}") and n not in set_in_files]
    missing += [f"{n} ({what})" for n, what in required_env if not env.get(n)]
    if missing:
        raise EnvError(f"missing credentials: set {', '.join(missing)} in the environment "
                       "(they are never written to disk)")
    return binary, version


# --- running packer --------------------------------------------------------------------------

class Interrupted(Exception):
    """Ctrl-C: packer was told to stop and has exited."""

    def __init__(self, returncode: int):
        super().__init__(f"interrupted; packer stopped (exit status {returncode})")
        self.returncode = returncode


@dataclass
class Result:
    returncode: int
    tracker: Tracker
    raw: list[str]  # lines that were not machine-readable (e.g. errors printed before parsing)

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def failure(self) -> str:
        """The most useful single line about why packer failed."""
        t = self.tracker
        for text in [*t.errors, *(b.error for b in t.builds.values() if b.error), *t.ui_errors]:
            if text.strip():
                return " ".join(text.split())
        for line in reversed(self.raw):
            if line.strip():
                return line.strip()
        return f"packer exited with status {self.returncode}"


def only_patterns(builders: Iterable[str]) -> list[str]:
    """-only globs for builder types: packer names a build `<build name>.<type>.<source>` (or
    `<type>.<source>` in an unnamed build block); `*qemu.*` matches both."""
    return [f"*{b}.*" for b in builders]


class PackerProcess:
    """One packer command, its machine-readable output parsed into events as it arrives."""

    def __init__(self, args: list[str], cwd: Path, env: dict | None = None):
        self.args = args
        self.cwd = cwd
        self.env = {**(os.environ if env is None else env), "CHECKPOINT_DISABLE": "1"}
        self.proc: subprocess.Popen | None = None
        self._queue: queue.Queue = queue.Queue()
        self.interrupts = 0

    def start(self) -> None:
        def child_setup():  # a fresh process group, SIGINT at its default disposition
            signal.signal(signal.SIGINT, signal.SIG_DFL)

        try:
            self.proc = subprocess.Popen(self.args, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                         text=True, errors="replace", bufsize=1,
                                         start_new_session=True, preexec_fn=child_setup)
        except OSError as exc:
            raise EnvError(f"cannot start {self.args[0]}: {exc.strerror}") from None
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc and self.proc.stdout
        for line in self.proc.stdout:
            self._queue.put(parse_line(line))
        self._queue.put(None)

    def interrupt(self) -> None:
        """SIGINT to packer's process group, as a terminal's Ctrl-C would send; a third
        Ctrl-C kills it."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.interrupts += 1
        sig = signal.SIGKILL if self.interrupts >= 3 else signal.SIGINT
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)

    def events(self, poll: float = 0.2) -> Iterator[Event | None]:
        """Events as they come; None every `poll` seconds when nothing came (time to redraw).
        A KeyboardInterrupt while waiting is forwarded to packer, and reading goes on until
        packer has exited (it prints what it cleans up)."""
        while True:
            try:
                ev = self._queue.get(timeout=poll)
            except queue.Empty:
                yield None
                continue
            except KeyboardInterrupt:
                self.interrupt()
                continue
            if ev is None:
                return
            yield ev

    def wait(self) -> int:
        assert self.proc is not None
        while True:
            try:
                return self.proc.wait()
            except KeyboardInterrupt:
                self.interrupt()


def run(args: list[str], cwd: Path, *, env: dict | None = None,
        on_event: Callable[[Event | None, Tracker], None] | None = None) -> Result:
    """Run one packer command to its end, feeding every event to a Tracker (and on_event)."""
    p = PackerProcess(args, cwd, env)
    tracker = Tracker()
    raw: list[str] = []
    p.start()
    for ev in p.events():
        try:
            if ev is not None:
                tracker.feed(ev)
                if ev.type == "raw":
                    raw.append(ev.data[0])
            if on_event is not None:
                on_event(ev, tracker)
        except KeyboardInterrupt:  # while drawing: same as while waiting
            p.interrupt()
    rc = p.wait()
    if p.interrupts:
        tracker.cancelled = True
        raise Interrupted(rc)
    return Result(rc, tracker, raw)


def init(binary: str, folder: Path, version: tuple[int, ...], *, env: dict | None = None) -> Result | None:
    """`packer init .` (installs required_plugins); packer older than 1.7 has no init."""
    if tuple(version) < INIT_SINCE:
        return None
    r = run([binary, "init", "."], folder, env=env)
    if not r.ok:
        raise EnvError(f"packer init failed in {folder}: {r.failure()}")
    return r


def build(binary: str, folder: Path, *, target: str = ".", builders: Iterable[str] = (), force: bool = False,
          variables: dict[str, str] | None = None, env: dict | None = None,
          on_event: Callable[[Event | None, Tracker], None] | None = None) -> Result:
    args = [binary, "build", "-machine-readable", "-color=false"]
    pats = only_patterns(builders)
    if pats:
        args.append("-only=" + ",".join(pats))
    if force:
        args.append("-force")
    for k, v in sorted((variables or {}).items()):
        args += ["-var", f"{k}={v}"]
    args.append(target)
    return run(args, folder, env=env, on_event=on_event)


# --- packer's manifest post-processor --------------------------------------------------------

def recorded_builds(manifest: Path, fingerprint: str) -> dict[str, dict]:
    """builder type -> the newest build in packer's manifest (post-processor "manifest")
    whose custom_data.bake_fingerprint is `fingerprint`."""
    try:
        doc = json.loads(manifest.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        return {}
    out: dict[str, dict] = {}
    for b in doc.get("builds") or ():
        if not isinstance(b, dict):
            continue
        if (b.get("custom_data") or {}).get("bake_fingerprint") != fingerprint:
            continue
        kind = b.get("builder_type", "")
        if kind and (kind not in out or b.get("build_time", 0) >= out[kind].get("build_time", 0)):
            out[kind] = b
    return out
