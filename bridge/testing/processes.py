"""Processes the test world starts (anvil, ``twin-bridge serve``, workers): each in a session of
its own, its output in a log, stopped with its whole process group."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO


class NotReadyError(RuntimeError):
    """A started process exited, or did not get ready in time (the message has its log's tail)."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now (the caller binds it soon after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def stop_process(proc: subprocess.Popen[bytes], *, timeout: float = 5.0) -> None:
    """Stops a process started in a session of its own, with its whole process group (npm's
    anvil is a node wrapper around the native binary): SIGTERM, then SIGKILL."""
    if proc.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=timeout)
            return
        except subprocess.TimeoutExpired:
            continue


def tail(log: IO[bytes] | Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a log (an open file or a path; empty if it cannot be read)."""
    if isinstance(log, Path):
        try:
            text = log.read_text(errors="replace")
        except OSError:
            return ""
    else:
        log.seek(0)
        text = log.read().decode(errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def spawn(
    argv: Sequence[str],
    log: IO[bytes],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Starts ``argv`` in a session of its own (``stop_process`` stops its whole group), its
    stdout and stderr in ``log``."""
    return subprocess.Popen(  # noqa: S603 - argv built by the caller, no shell
        list(argv),
        cwd=cwd,
        env=None if env is None else dict(env),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def wait_ready(
    proc: subprocess.Popen[bytes],
    ready: Callable[[], bool],
    *,
    what: str,
    log: IO[bytes] | Path,
    timeout: float,
    poll_s: float = 0.1,
) -> None:
    """Waits until ``ready()`` (an ``OSError`` counts as not yet).

    Raises:
        NotReadyError: ``proc`` exited first, or ``timeout`` s went by.
    """
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise NotReadyError(f"{what} exited with {proc.returncode}:\n{tail(log)}")
        try:
            if ready():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise NotReadyError(f"{what} did not get ready in {timeout:.0f} s:\n{tail(log)}")
        time.sleep(poll_s)
