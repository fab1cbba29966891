"""tests/vm/bootcommand.py, the boot_command interpreter the UEFI VM test types with: Packer's
grammar (packer-plugin-sdk bootcommand/boot_command.pigeon), the US keys of each character, and
a refusal of what it does not implement."""
from __future__ import annotations

import pytest

from vm.bootcommand import BootCommandError, Keys, Toggle, Wait, key_of, parse


@pytest.mark.parametrize("ch,keys", [
    ("a", ("a",)), ("Z", ("shift", "z")), ("0", ("0",)), (" ", ("spc",)),
    ("$", ("shift", "4")), ("|", ("shift", "backslash")), ("'", ("apostrophe",)), ('"', ("shift", "apostrophe")),
    (";", ("semicolon",)), ("*", ("shift", "8")), ("&", ("shift", "7")), ("(", ("shift", "9")), (")", ("shift", "0")),
    ("[", ("bracket_left",)), ("]", ("bracket_right",)), ("=", ("equal",)), ("-", ("minus",)), ("/", ("slash",)),
    (".", ("dot",)), (",", ("comma",)), ("<", ("shift", "comma")), (">", ("shift", "dot")), ("_", ("shift", "minus")),
    ("\\", ("backslash",)), ("~", ("shift", "grave_accent")), ("{", ("shift", "bracket_left")),
])
def test_each_character_is_its_us_key(ch, keys):
    assert key_of(ch) == keys


@pytest.mark.parametrize("ch", ["é", "€", "\x00", "\r"])
def test_a_character_without_a_us_key_is_refused(ch):
    with pytest.raises(BootCommandError):
        key_of(ch)


def test_the_grammar():
    got = parse(["c<wait>", "a<ENTER><wait5><wait500ms><wait1m30s>", "<leftShiftOn>x<leftShiftOff><f12><spacebar>"])
    assert got == [Keys(("c",)), Wait(1.0), Keys(("a",)), Keys(("ret",)), Wait(5.0), Wait(0.5), Wait(90.0),
                   Toggle("shift", True), Keys(("x",)), Toggle("shift", False), Keys(("f12",)), Keys(("spc",))]
    # a `<` that opens no token is a character, as for Packer
    assert parse("a < b") == [Keys(("a",)), Keys(("spc",)), Keys(("shift", "comma")), Keys(("spc",)), Keys(("b",))]


@pytest.mark.parametrize("command", ["<entr>", "x<wait5x>", "<wait05>", "<f13>", "<leftShiftUp>", "<>",
                                     "{{ .HTTPIP }}", "linux ds=nocloud;s=http://{{.HTTPIP}}:{{.HTTPPort}}/"])
def test_what_is_not_implemented_or_not_resolved_is_refused(command):
    with pytest.raises(BootCommandError):
        parse(command)
