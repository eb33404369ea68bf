"""Child processes that never outlive their parent: started in their own session, killed with
the parent (Linux ``PR_SET_PDEATHSIG``), optionally pinned to cores, output to a log file,
stopped by SIGTERM then SIGKILL."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from typing import Dict, Optional, Sequence

#: Seconds between SIGTERM and SIGKILL when stopping a process.
STOP_GRACE = 5.0
_PR_SET_PDEATHSIG = 1


def _child_setup(cores: Optional[Sequence[int]]):
    """What runs in the child between fork and exec (no Python objects shared)."""

    def setup():
        if sys.platform.startswith("linux"):
            try:
                ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
            except (OSError, AttributeError):
                pass
        if cores is not None:
            os.sched_setaffinity(0, set(cores))

    return setup


class Child:
    """One started process: `process` (a Popen), `log_path` (its stdout and stderr)."""

    def __init__(self, argv: Sequence[str], log_path: str, env: Dict[str, str], cores=None):
        if cores is not None and not hasattr(os, "sched_setaffinity"):
            raise ValueError("pinning to cores needs os.sched_setaffinity (Linux)")
        self.log_path = log_path
        self._log = open(log_path, "wb")
        try:
            self.process = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                preexec_fn=_child_setup(cores),
            )
        except BaseException:
            self._log.close()
            raise

    @property
    def pid(self) -> int:
        return self.process.pid

    def poll(self) -> Optional[int]:
        return self.process.poll()

    def how_it_ended(self) -> str:
        """'exited with code N' or 'was killed by SIGNAME' (None while running)."""
        code = self.process.poll()
        if code is None:
            return "is running"
        if code < 0:
            try:
                return f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"was killed by signal {-code}"
        return f"exited with code {code}"

    def log_tail(self, lines: int = 15) -> str:
        self._log.flush()
        try:
            with open(self.log_path, "rb") as f:
                text = f.read()[-20000:].decode("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after STOP_GRACE seconds; waits until it is gone."""
        if self.process.poll() is None:
            try:
                self.process.send_signal(signal.SIGTERM)
                self.process.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            except ProcessLookupError:
                pass
        self._log.close()


def stop_all(children: Sequence[Child]) -> None:
    """Stop every child: all get SIGTERM first, so their grace periods overlap."""
    for child in children:
        if child.poll() is None:
            try:
                child.process.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + STOP_GRACE
    for child in children:
        try:
            child.process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        child.stop()
