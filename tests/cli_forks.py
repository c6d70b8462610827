"""`python -m mlbench ARGS` for the tests without paying torch's import in every command.

A server process imports the heavy third-party packages once (torch, torch._dynamo, torchvision, numpy), then
forks one child per command. The child is a new process as a user's would be: its own environment, working
folder, standard streams (files, read back by the test), ``sys.argv`` and exit status; mlbench itself is
imported fresh in it, and it runs ``mlbench`` as ``__main__`` the way ``python -m`` does (an uncaught exception
prints its traceback and exits 1). Only what those packages read from the environment when they are imported
is the server's: :func:`support.mlbench` keeps one server per value of those variables (thread counts, torch's
and Hugging Face's settings) and runs a plain subprocess where Python's own start-up would differ (PYTHON*).

Protocol (one request at a time, JSON lines): the test writes ``{"argv", "env", "cwd", "stdout", "stderr"}`` on
the server's stdin; the server answers ``{"pid": N}`` when the child started and ``{"status": S}`` (the raw
wait status) when it ended.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import sys

PRELOAD = ("numpy", "torch", "torch._dynamo", "torchvision")


def serve() -> tuple[list[str], str] | None:
    """The server's loop; returns (argv, cwd) in a child, None in the server when its stdin closes."""
    for name in PRELOAD:
        try:
            __import__(name)
        except Exception:  # noqa: BLE001 - a package that does not import is imported (and fails) in the child
            pass
    gc.freeze()  # the children's collections leave the server's objects (and their shared pages) alone
    answers = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 1)  # the server prints nothing; its children get their own streams
    requests = os.fdopen(0, "r")
    for line in requests:
        req = json.loads(line)
        pid = os.fork()
        if pid == 0:
            os.close(answers)
            for fd, path in ((1, req["stdout"]), (2, req["stderr"])):
                f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                os.dup2(f, fd)
                os.close(f)
            os.dup2(devnull, 0)
            os.close(devnull)
            os.environ.clear()
            os.environ.update(req["env"])
            os.chdir(req["cwd"])
            if "numpy" in sys.modules:  # a new process seeds numpy's global generator afresh
                sys.modules["numpy"].random.seed()
            return req["argv"], req["cwd"]
        os.write(answers, (json.dumps({"pid": pid}) + "\n").encode())
        _, status = os.waitpid(pid, 0)
        os.write(answers, (json.dumps({"status": status}) + "\n").encode())
    return None


def run(argv: list[str], cwd: str) -> int:
    """Run ``python -m mlbench ARGV`` in this (forked) process; returns the exit status Python would give."""
    import runpy

    sys.argv = ["-m", *argv]
    sys.path[0] = cwd  # what `python -m` puts first on the path
    try:
        runpy.run_module("mlbench", run_name="__main__", alter_sys=True)
        return 0
    except SystemExit as exc:  # what Python does with it at the top level
        if exc.code is None:
            return 0
        if isinstance(exc.code, int):
            return exc.code & 0xFF
        print(exc.code, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        sys.excepthook(*sys.exc_info())
        return -signal.SIGINT
    except BaseException:  # noqa: BLE001 - printed as Python prints an uncaught exception
        sys.excepthook(*sys.exc_info())
        return 1


def leave(code: int) -> None:
    """Exit as the interpreter does (threads joined, atexit handlers, streams flushed) but without tearing down
    the modules imported by the server: that would write to, so copy, every page shared with it (seconds)."""
    import atexit
    import threading

    threading._shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    if code < 0:  # killed by a signal, as an uncaught KeyboardInterrupt ends Python
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    os._exit(code)


if __name__ == "__main__":
    job = serve()
    if job is None:
        sys.exit(0)
    leave(run(*job))
