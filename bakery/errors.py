"""Errors and diagnostics.

Two kinds of failure, with their exit codes:
- bad input (the user's everyday case): ``InputError`` / ``Diagnostic``s, exit 2;
- the environment failed (missing binary, permission, full disk): ``EnvError``, exit 1.
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field

EXIT_ENV = 1
EXIT_INPUT = 2

# The names of the C0 and C1 control characters (ISO/IEC 6429; Unicode gives them no character
# name, only these aliases), by code point.
_C0 = ("NUL", "SOH", "STX", "ETX", "EOT", "ENQ", "ACK", "BEL", "BS", "HT", "LF", "VT", "FF", "CR", "SO", "SI",
       "DLE", "DC1", "DC2", "DC3", "DC4", "NAK", "SYN", "ETB", "CAN", "EM", "SUB", "ESC", "FS", "GS", "RS", "US")
_C1 = ("PAD", "HOP", "BPH", "NBH", "IND", "NEL", "SSA", "ESA", "HTS", "HTJ", "VTS", "PLD", "PLU", "RI", "SS2", "SS3",
       "DCS", "PU1", "PU2", "STS", "CCH", "MW", "SPA", "EPA", "SOS", "SGCI", "SCI", "CSI", "ST", "OSC", "PM", "APC")


def char_name(ch: str) -> str:
    """A character for a message, never the character itself: 'U+001B (ESC)',
    'U+2028 (LINE SEPARATOR)'."""
    cp = ord(ch)
    name = (_C0[cp] if cp < 0x20 else "DEL" if cp == 0x7F else _C1[cp - 0x80] if 0x80 <= cp < 0xA0
            else unicodedata.name(ch, ""))
    return f"U+{cp:04X}" + (f" ({name})" if name else "")


_SHORT_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def printable(text: str, keep: str = "") -> str:
    """``text`` with every character that is not printable (control characters, line and
    paragraph separators, format characters such as bidi overrides, unassigned code points)
    written as a Python escape (``\\x1b``, ``\\u2028``), but those in ``keep``: what reaches a
    terminal or a log can neither move the cursor, nor recolour it, nor break a line."""
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch.isprintable() or ch in keep:
            out.append(ch)
        else:
            cp = ord(ch)
            out.append(_SHORT_ESCAPES.get(ch) or (f"\\x{cp:02x}" if cp < 0x100 else
                                                  f"\\u{cp:04x}" if cp < 0x10000 else f"\\U{cp:08x}"))
    return "".join(out)


@dataclass(frozen=True)
class Position:
    file: str
    line: int  # 1-based
    column: int  # 1-based

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Diagnostic:
    """One finding of validation: where, which check, what is wrong and what would be right."""

    check: str  # stable ID, e.g. "cidr-overlap"
    message: str
    position: Position | None = None
    severity: str = "error"  # "error" | "warning"
    hint: str = ""

    def __str__(self) -> str:
        """One line, with nothing a terminal would act on: a control character in a file
        name, a message or a hint (all of which can quote the user's input) is escaped."""
        where = f"{self.position}: " if self.position else ""
        text = f"{where}{self.severity}[{self.check}]: {self.message}"
        if self.hint:
            text += f"; {self.hint}"
        return printable(text)

    def as_dict(self) -> dict:
        d: dict[str, object] = {
            "check": self.check,
            "severity": self.severity,
            "message": self.message,
            "hint": self.hint,
        }
        if self.position:
            d.update(file=self.position.file, line=self.position.line, column=self.position.column)
        return d


class BakeryError(Exception):
    exit_code = EXIT_ENV

    def __str__(self) -> str:
        # a message can quote a path or a value from the user: one line per line, nothing raw
        return printable(super().__str__(), keep="\n")


class InputError(BakeryError):
    """Bad input. Carries one or more diagnostics."""

    exit_code = EXIT_INPUT

    def __init__(self, diagnostics: list[Diagnostic] | Diagnostic | str, *, check: str = "input",
                 position: Position | None = None):
        if isinstance(diagnostics, str):
            diagnostics = [Diagnostic(check, diagnostics, position)]
        elif isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        self.diagnostics = list(diagnostics)
        super().__init__("\n".join(str(d) for d in self.diagnostics))


class EnvError(BakeryError):
    """The environment failed; the message says what to do next."""

    exit_code = EXIT_ENV


@dataclass
class Report:
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "warning"]
