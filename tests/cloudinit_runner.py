"""Run many `cloud-init ...` commands for the tests from one interpreter that has imported
cloud-init once: each request is a fork that runs exactly what /usr/bin/cloud-init runs
(cloudinit.cmd.main.main with the request's argv), with its own stdout, stderr and exit
status, and its own copy of cloud-init's state, so no command sees another's.

Started by tests/conftest.py with the interpreter of cloud-init's own script. Protocol: one
JSON request per line on stdin, {"argv": [...], "timeout": s}; one JSON answer per line on
stdout, {"rc": n, "stdout": "...", "stderr": "..."}.
"""
import json
import os
import signal
import sys
import tempfile

# what `cloud-init schema` and `cloud-init devel net-convert` import, paid once here
import cloudinit.cmd.devel.net_convert  # noqa: F401,E402
import cloudinit.cmd.devel.parser  # noqa: F401,E402
import cloudinit.cmd.main  # noqa: E402
import cloudinit.config.schema  # noqa: E402

cloudinit.config.schema.get_schema()  # noqa: E402 (reads the schema files once; the children reuse it)


def child(argv: list[str], out_fd: int, err_fd: int, timeout: float) -> None:
    """argv as the command gets it, argv[0] the script's path."""
    os.dup2(out_fd, 1)
    os.dup2(err_fd, 2)
    signal.alarm(max(1, int(timeout)))
    sys.argv = list(argv)
    try:
        # /usr/bin/cloud-init: sys.exit(main()), main reading sys.argv
        sys.exit(cloudinit.cmd.main.main())
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
                child(req["argv"], out.fileno(), err.fileno(), req.get("timeout", 120))
            _, status = os.waitpid(pid, 0)
            rc = os.waitstatus_to_exitcode(status)
            out.seek(0)
            err.seek(0)
            answers.write(json.dumps({"rc": rc, "stdout": out.read().decode(errors="replace"),
                                      "stderr": err.read().decode(errors="replace")}) + "\n")
            answers.flush()


if __name__ == "__main__":
    main()
