"""Durations as cluster.yaml writes them (1h30m, 45s): the schema's pattern admits them, the
checks and the model read them here."""
from __future__ import annotations


def parse_duration(text: str) -> int:
    """Seconds in a duration like 1h30m or 45s ('' or '0' is 0)."""
    total, num = 0, ""
    for ch in text:
        if ch.isdigit():
            num += ch
        else:
            total += int(num) * {"h": 3600, "m": 60, "s": 1}[ch]
            num = ""
    return total


def is_duration(text: str) -> bool:
    """The schema's duration pattern: 0, or hours, minutes, seconds in that order (1h30m, 45s)."""
    import re

    return bool(text) and re.fullmatch(r"0|([0-9]+h)?([0-9]+m)?([0-9]+s)?", text, re.ASCII) is not None
