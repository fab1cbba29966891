"""What every semantic check shares: the registry (``check``, ``CHECKS``) and ``Ctx``, the
data a check reads and the way it reports (file:line:column from the YAML positions)."""
from __future__ import annotations

import ipaddress
from collections.abc import Callable

from ..errors import Diagnostic
from .loader import Document

CHECKS: list[tuple[str, Callable]] = []


def check(*ids: str):
    def register(fn):
        CHECKS.append((ids[0], fn))
        fn.ids = ids
        return fn
    return register


class Ctx:
    def __init__(self, doc: Document, data: dict):
        self.doc, self.data, self.spec = doc, data, data["spec"]
        net = self.spec["network"]
        self.nets: dict[str, ipaddress.IPv4Network] = {}
        self.bad_cidr: set[str] = set()
        for key in ("nodeCidr", "podCidr", "serviceCidr"):
            try:
                self.nets[key] = ipaddress.IPv4Network(net[key], strict=True)  # the schema allows IPv4 only
            except ValueError:
                self.bad_cidr.add(key)

    def err(self, check_id: str, path: tuple, message: str, hint: str = "", *, key: bool = False,
            severity: str = "error") -> Diagnostic:
        return Diagnostic(check_id, message, self.doc.position(path, key=key), severity, hint)

    def warn(self, check_id: str, path: tuple, message: str, hint: str = "") -> Diagnostic:
        return self.err(check_id, path, message, hint, severity="warning")
