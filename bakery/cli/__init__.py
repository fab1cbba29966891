"""The command line: `bakery.cli:main` is the entry point. commands.py holds the group and the
commands on cluster.yaml and its render; deliver.py the commands that take a render further.
Heavy modules are imported inside the commands, so `--version` and `--help` stay fast."""
from __future__ import annotations

from .commands import cli, main
from .deliver import COMMANDS
from .status import COMMANDS as STATUS_COMMANDS

for _command in COMMANDS + STATUS_COMMANDS:
    cli.add_command(_command)

__all__ = ["cli", "main"]
