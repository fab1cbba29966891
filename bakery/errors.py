"""Errors and diagnostics.

Two kinds of failure, with their exit codes:
- bad input (the user's everyday case): ``InputError`` / ``Diagnostic``s, exit 2;
- the environment failed (missing binary, permission, full disk): ``EnvError``, exit 1.
"""
from __future__ import annotations

from dataclasses import dataclass, field

EXIT_ENV = 1
EXIT_INPUT = 2


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
        where = f"{self.position}: " if self.position else ""
        text = f"{where}{self.severity}[{self.check}]: {self.message}"
        if self.hint:
            text += f"; {self.hint}"
        return text

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
