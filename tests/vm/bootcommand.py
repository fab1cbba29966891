"""Type a Packer boot_command into a VM's emulated keyboard, the way Packer does.

The grammar is packer-plugin-sdk's (bootcommand/boot_command.pigeon): Packer joins the list's
strings and reads them as a sequence of
- ``<wait>`` (one second), ``<waitN>`` (N seconds) or ``<waitD>`` (a Go duration: ``500ms``,
  ``1m30s``);
- special keys ``<enter>``, ``<esc>``, ... (names case-insensitive), each optionally with an
  ``On``/``Off`` suffix that presses or releases it alone (``<leftShiftOn>``);
- any other character, typed as the key that makes it on a US keyboard (shifted symbols with
  shift held).

Stricter than Packer in three ways, on purpose: a ``<...>`` that is no token implemented here
is an error (Packer would type it letter by letter, which is never what a command meant); a
character with no key on a US keyboard is an error; and a ``{{ ... }}`` template left in
(Packer fills in ``{{ .HTTPIP }}`` before typing) is an error.

Keys go to qemu over QMP (``send-key`` with QKeyCode names, schema qapi/ui.json), which feeds
the emulated PS/2 keyboard Packer's VNC key events reach too.
"""
from __future__ import annotations

import json
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path

# Special keys of the SDK grammar -> QKeyCode (only those with an unambiguous key).
SPECIAL = {
    "bs": "backspace", "del": "delete", "enter": "ret", "return": "ret", "esc": "esc", "tab": "tab",
    "up": "up", "down": "down", "left": "left", "right": "right", "spacebar": "spc",
    "insert": "insert", "home": "home", "end": "end", "pageup": "pgup", "pagedown": "pgdn",
    "leftalt": "alt", "rightalt": "alt_r", "leftctrl": "ctrl", "rightctrl": "ctrl_r",
    "leftshift": "shift", "rightshift": "shift_r", "leftsuper": "meta_l", "rightsuper": "meta_r",
    **{f"f{i}": f"f{i}" for i in range(1, 13)},
}
# US layout: unshifted symbol keys, and what shift makes of each key.
PLAIN = {" ": "spc", "-": "minus", "=": "equal", "[": "bracket_left", "]": "bracket_right",
         "\\": "backslash", ";": "semicolon", "'": "apostrophe", "`": "grave_accent", ",": "comma",
         ".": "dot", "/": "slash", "\n": "ret", "\t": "tab"}
SHIFTED = {"!": "1", "@": "2", "#": "3", "$": "4", "%": "5", "^": "6", "&": "7", "*": "8", "(": "9",
           ")": "0", "_": "minus", "+": "equal", "{": "bracket_left", "}": "bracket_right",
           "|": "backslash", ":": "semicolon", '"': "apostrophe", "~": "grave_accent", "<": "comma",
           ">": "dot", "?": "slash"}
_TOKEN = re.compile(r"<([^<>\s]*)>")
_DURATION = re.compile(r"(?:-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:ns|us|µs|ms|s|m|h))+")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


class BootCommandError(ValueError):
    pass


@dataclass(frozen=True)
class Wait:
    seconds: float


@dataclass(frozen=True)
class Keys:
    """Press these keys together (modifiers first), then release them."""
    qcodes: tuple[str, ...]


@dataclass(frozen=True)
class Toggle:
    """Hold (down=True) or release one key: <leftShiftOn> / <leftShiftOff>."""
    qcode: str
    down: bool


Action = Wait | Keys | Toggle


def key_of(ch: str) -> tuple[str, ...]:
    """The keys that type one character on a US keyboard."""
    if "a" <= ch <= "z" or "0" <= ch <= "9":
        return (ch,)
    if "A" <= ch <= "Z":
        return ("shift", ch.lower())
    if ch in PLAIN:
        return (PLAIN[ch],)
    if ch in SHIFTED:
        return ("shift", SHIFTED[ch])
    raise BootCommandError(f"no key types {ch!r} on a US keyboard")


def _go_duration(text: str) -> float:
    if text.isdigit():  # the grammar's Integer: seconds
        if len(text) > 1 and text[0] == "0":
            raise BootCommandError(f"<wait{text}>: not a number Packer reads")
        return float(text)
    if not _DURATION.fullmatch(text):
        raise BootCommandError(f"<wait{text}>: not a duration (e.g. <wait5>, <wait500ms>, <wait1m>)")
    return sum(float(n) * _UNITS[u] for n, u in re.findall(r"(-?[0-9.]+)(ns|us|µs|ms|s|m|h)", text))


def parse(command: list[str] | str) -> list[Action]:
    text = command if isinstance(command, str) else "".join(command)
    if "{{" in text or "}}" in text:
        raise BootCommandError(f"an unresolved Packer template in the boot command: {text!r}")
    out: list[Action] = []
    i = 0
    while i < len(text):
        m = _TOKEN.match(text, i)
        if m:
            word = m.group(1).lower()
            if word.startswith("wait"):
                out.append(Wait(_go_duration(word[4:]) if word[4:] else 1.0))
            elif word in SPECIAL:
                out.append(Keys((SPECIAL[word],)))
            elif word.endswith("on") and word[:-2] in SPECIAL:
                out.append(Toggle(SPECIAL[word[:-2]], True))
            elif word.endswith("off") and word[:-3] in SPECIAL:
                out.append(Toggle(SPECIAL[word[:-3]], False))
            else:
                raise BootCommandError(f"{m.group(0)} at {i}: not a key this interpreter implements")
            i = m.end()
            continue
        out.append(Keys(key_of(text[i])))
        i += 1
    return out


class QMP:
    """A minimal QMP client on qemu's unix socket (docs/interop/qmp-spec)."""

    def __init__(self, path: Path, timeout: float = 30.0):
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.settimeout(timeout)
                self.sock.connect(str(path))
                break
            except (FileNotFoundError, ConnectionRefusedError):
                self.sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        self.file = self.sock.makefile("rwb")
        greeting = self._read()
        assert "QMP" in greeting, greeting
        self.execute("qmp_capabilities")

    def _read(self) -> dict:
        line = self.file.readline()
        if not line:
            raise ConnectionError("qemu closed its QMP socket")
        return json.loads(line)

    def execute(self, command: str, **arguments) -> object:
        self.file.write(json.dumps({"execute": command, "arguments": arguments}).encode() + b"\n")
        self.file.flush()
        while True:
            reply = self._read()
            if "return" in reply:
                return reply["return"]
            if "error" in reply:
                raise RuntimeError(f"QMP {command}: {reply['error']}")
            # an asynchronous event: skip it

    def close(self) -> None:
        self.file.close()
        self.sock.close()

    def __enter__(self) -> QMP:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def type_command(qmp: QMP, command: list[str] | str, hold_ms: int = 30, gap_s: float = 0.05) -> float:
    """Type the boot command: each key held hold_ms, gap_s between keys (Packer's
    boot_key_interval), the <wait>s slept. Returns the seconds it took."""
    actions = parse(command)  # all of it first: an unknown token fails before any key is typed
    t0 = time.monotonic()
    for a in actions:
        if isinstance(a, Wait):
            time.sleep(a.seconds)
        elif isinstance(a, Keys):
            qmp.execute("send-key", keys=[{"type": "qcode", "data": q} for q in a.qcodes], **{"hold-time": hold_ms})
            time.sleep(gap_s + hold_ms / 1000)
        else:
            qmp.execute("input-send-event",
                        events=[{"type": "key", "data": {"down": a.down, "key": {"type": "qcode", "data": a.qcode}}}])
            time.sleep(gap_s)
    return time.monotonic() - t0
