"""Commands that take rendered outputs further (issue 5). Keep imports light: click only
at module level; everything else inside the commands."""
from __future__ import annotations

from .cli import cli  # noqa: F401
