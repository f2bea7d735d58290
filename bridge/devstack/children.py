"""The dev stack's child processes (anvil, the API, the worker, the indexer): each in its own
process group with its output in ``<data_dir>/logs/<name>.log``, stopped with its parent."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final

from bridge.devstack.options import DevError

START_TIMEOUT_S: Final = 60.0
STOP_TIMEOUT_S: Final = 30.0


def port_free(host: str, port: int) -> bool:
    """Whether ``host:port`` can be listened on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: the child gets SIGTERM if the dev process dies, so nothing is left running."""
    os.setsid()
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    log: IO[bytes]

    def tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        if self.proc.poll() is None:
            # its own process group: npm's anvil is a node wrapper around the native binary
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


def spawn(name: str, argv: list[str], log_dir: Path, env: Mapping[str, str]) -> Child:
    """Starts ``argv`` as the child ``name``, appending its output to its log."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    log = log_path.open("ab")
    log.write(f"\n--- {datetime.now(UTC).isoformat()} {shlex.join(argv)}\n".encode())
    log.flush()
    proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
        argv,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=dict(env),
        preexec_fn=_die_with_parent,
    )
    return Child(name, proc, log_path, log)


def wait_until(
    child: Child, ready: Callable[[], Any], what: str, timeout: float = START_TIMEOUT_S
) -> None:
    """Polls ``ready`` until it is true.

    Raises:
        DevError: the child exited first, or ``timeout`` passed (with the tail of its log).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.proc.poll() is not None:
            raise DevError(
                f"{child.name} exited with {child.proc.returncode} before {what}:\n{child.tail()}"
            )
        with contextlib.suppress(Exception):
            if ready():
                return
        time.sleep(0.2)
    raise DevError(
        f"{child.name} did not become ready ({what}) in {timeout:.0f} s:\n{child.tail()}"
    )
