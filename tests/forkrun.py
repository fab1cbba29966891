"""Run many commands of one Python program for the tests from one interpreter that has
imported the program once: each request is a fork that runs the program's entry point with
the request's argv and working folder, its own stdout, stderr and exit status, and its own
copy of the program's state, so no command sees another's. Only the interpreter's start-up
and the imports are shared; they are what a test would otherwise pay for every file.

    forkrun.py call:PACKAGE.MODULE:FUNCTION [PRELOAD...]   sys.exit(FUNCTION()), as a console script
    forkrun.py module:PACKAGE [PRELOAD...]                 `python -m PACKAGE`

Protocol: one JSON request per line on stdin, {"argv": [...], "cwd": str|null, "env": {...}|null,
"timeout": s}; one JSON answer per line on stdout, {"rc": n, "stdout": "...", "stderr": "..."}.
Started by tests/conftest.py, checked against the real commands by tests/test_harness.py.
"""
import importlib
import json
import os
import runpy
import signal
import sys
import tempfile

ENTRY = sys.argv[1]
for _name in sys.argv[2:]:
    importlib.import_module(_name)
if ENTRY.startswith("call:"):
    _module, _, _function = ENTRY.removeprefix("call:").partition(":")
    FUNCTION = getattr(importlib.import_module(_module), _function)


def run_entry() -> None:
    if ENTRY.startswith("call:"):
        sys.exit(FUNCTION())
    runpy.run_module(ENTRY.removeprefix("module:"), run_name="__main__", alter_sys=True)


def child(req: dict, out_fd: int, err_fd: int) -> None:
    fd = os.open(os.devnull, os.O_RDONLY)
    os.dup2(fd, 0)
    os.dup2(out_fd, 1)
    os.dup2(err_fd, 2)
    signal.alarm(max(1, int(req.get("timeout", 120))))
    if req.get("env") is not None:
        os.environ.clear()
        os.environ.update(req["env"])
    if req.get("cwd"):
        os.chdir(req["cwd"])
    sys.argv = list(req["argv"])
    code = 0
    try:
        run_entry()
    except SystemExit as e:  # sys.exit's rules: None is 0, an int itself, else printed and 1
        if e.code is None or isinstance(e.code, int):
            code = e.code or 0
        else:
            print(e.code, file=sys.stderr)
            code = 1
    except BaseException:  # noqa: BLE001 - a traceback and 1, as from the real command
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


def main() -> None:
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # nothing but answers on the answer stream
    for line in sys.stdin:
        req = json.loads(line)
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            pid = os.fork()
            if pid == 0:
                child(req, out.fileno(), err.fileno())
            _, status = os.waitpid(pid, 0)
            out.seek(0)
            err.seek(0)
            answers.write(json.dumps({"rc": os.waitstatus_to_exitcode(status),
                                      "stdout": out.read().decode(errors="replace"),
                                      "stderr": err.read().decode(errors="replace")}) + "\n")
            answers.flush()


if __name__ == "__main__":
    main()
