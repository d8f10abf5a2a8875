"""Run a Python child process and stand in for it: signals passed on, its exit code returned, and it dies with
its parent (the train stage relaunches itself on one GPU, or under torchrun, this way)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys

# Runs first in a relaunched child, then becomes the real command (exec): on Linux the child gets SIGTERM when the
# process that started it dies, even of SIGKILL, which no handler can pass on (its own process group, below, keeps it
# from the signals sent to the stage's group).
DIE_WITH_PARENT = """
import os, sys
if sys.platform == "linux":
    import ctypes, signal
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != int(sys.argv[1]):  # the parent died before that
        sys.exit(128 + signal.SIGTERM)
os.execv(sys.executable, [sys.executable, *sys.argv[2:]])
"""
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# torchrun, stopped by a signal, passes it to its workers, waits for them, then dies of a SignalException traceback
# with exit code 1: the workers' `Error:` line said it all, so exit quietly with the shell's code for the signal.
TORCHRUN = """
import sys
from torch.distributed.elastic.multiprocessing.api import SignalException
from torch.distributed.run import main
try:
    main(sys.argv[1:])
except SignalException as stop:
    sys.exit(128 + stop.sigval)
"""


def run_child(python_args: list[str], env: dict[str, str] | None = None) -> int:
    """Run `python <python_args>` and stand in for it until it ends: signals passed on, its exit code returned.

    The child gets a process group of its own, so a terminal's Ctrl-C reaches only this process, which passes it on
    once (a second SIGINT would cut the child's own interrupt handling short), as it does SIGTERM and SIGHUP; then it
    waits for the child, however long it takes to say which checkpoint is kept. subprocess.call instead killed the
    child 0.25 s after Ctrl-C, before that line, and left it running, GPU and all, on SIGTERM. A child killed by a
    signal gives the shell's code, 128 + the signal.
    """
    child: list[subprocess.Popen] = []
    pending: list[int] = []

    def forward(signum, frame) -> None:
        if not child:
            pending.append(signum)
            return
        with contextlib.suppress(ProcessLookupError):
            child[0].send_signal(signum)

    previous = {signum: signal.signal(signum, forward) for signum in FORWARDED_SIGNALS}
    try:
        command = [sys.executable, "-c", DIE_WITH_PARENT, str(os.getpid()), *python_args]
        child.append(subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, process_group=0))
        for signum in pending:
            child[0].send_signal(signum)
        returncode = child[0].wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return returncode if returncode >= 0 else 128 - returncode
