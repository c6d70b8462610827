"""Stops from outside: SIGTERM and SIGHUP are handled like Ctrl-C (SIGINT).

``timeout``, ``docker stop``, SLURM (time limit, scancel, preemption) and systemd send SIGTERM; a closed
terminal or SSH session sends SIGHUP. :func:`install` turns either into :class:`Stopped`, a
``KeyboardInterrupt``, in the main thread, so that every path that keeps the results made so far on Ctrl-C
keeps them on these too. The result says why the command stopped (:func:`describe`) and the command exits
with 128 + the signal's number (130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP), as a shell reports it.
"""

from __future__ import annotations

import signal

HANDLED = (signal.SIGTERM, signal.SIGHUP)

_received: int | None = None


class Stopped(KeyboardInterrupt):
    """Raised in the main thread when SIGTERM or SIGHUP arrives."""

    def __init__(self, signum: int):
        super().__init__(f"terminated by {signal.Signals(signum).name}")
        self.signum = signum


def _handler(signum, frame) -> None:
    global _received
    if _received is not None:
        return  # a second signal while the first one's results are being written: let them be written
    _received = signum
    raise Stopped(signum)


def install() -> None:
    """Handle SIGTERM and SIGHUP like SIGINT in this process (main thread only; elsewhere a no-op)."""
    for sig in HANDLED:
        try:
            if signal.getsignal(sig) is signal.SIG_IGN:
                continue  # `nohup` (or a parent) asked to ignore it: keep ignoring it
            signal.signal(sig, _handler)
        except ValueError:  # not the main thread
            return


def check() -> None:
    """Raise Stopped if SIGTERM or SIGHUP arrived. The handler raises it at once, but Python drops an exception
    raised while a finalizer (``__del__``, a weakref callback) runs, and the handler ignores a second signal, so
    a run could go on to the end after a stop. Loops call this at their safe points (each training step, each
    run) so that a stop always ends them."""
    if _received is not None:
        raise Stopped(_received)


def received() -> int | None:
    """The SIGTERM/SIGHUP this process received, if any."""
    return _received


def signum_of(exc: BaseException | None) -> int:
    """The signal that stopped us: SIGINT for Ctrl-C, else the one received."""
    if isinstance(exc, Stopped):
        return exc.signum
    if _received is not None:
        return _received
    return signal.SIGINT


def stopped(exc: BaseException | None) -> bool:
    """Whether ``exc`` is (or was caused by) a stop from outside: Ctrl-C, SIGTERM or SIGHUP.

    A signal sent to the whole process group can make a helper (a DataLoader worker, a collective's peer)
    fail before the main thread sees the signal; once a signal was received, the failure is the stop.
    """
    return isinstance(exc, KeyboardInterrupt) or _received is not None


def describe(exc: BaseException | None = None) -> str:
    """Why we stopped, in words: "interrupted (Ctrl-C)" or "terminated by SIGTERM"."""
    sig = signum_of(exc)
    if sig == signal.SIGINT:
        return "interrupted (Ctrl-C)"
    return f"terminated by {signal.Signals(sig).name}"


def exit_code(exc: BaseException | None = None) -> int:
    """128 + the signal's number: 130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP."""
    return 128 + int(signum_of(exc))
