"""Serving the API: one process, or several worker processes sharing one port.

With several workers, each listens on a socket of its own, bound with ``SO_REUSEPORT`` where the
system has it (Linux, the BSDs, macOS). The kernel then hands each new connection to one of the
workers' sockets by a hash of the connection's addresses, so keep-alive connections opened in a
burst spread over the workers. Sharing one listening socket instead (uvicorn's default), the worker
that wakes first accepts the whole burst and the others idle, however many cores there are.
uvicorn's supervisor runs the workers either way: it restarts one that dies and stops them all on
SIGINT or SIGTERM. Their metrics are kept in prometheus_client's multiprocess mode, so that
``/metrics`` answers the sum over the workers, whichever of them a scrape reaches.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
from typing import Any, TypeVar

import uvicorn
from fastapi import FastAPI
from uvicorn.supervisors import Multiprocess

APP_FACTORY = "bridge.api.serving:app_from_env"


def app_from_env() -> FastAPI:
    """The API as ``twin-bridge serve`` builds it from ``TWIN_BRIDGE_*`` (a worker's factory)."""
    from bridge.api import create_app
    from bridge.cli.common import with_deployment
    from bridge.settings import Settings

    return create_app(with_deployment(Settings()))


class ReusePortSocket(socket.socket):
    """A worker's listening socket, bound with ``SO_REUSEPORT``. Handed to a worker process
    (pickled on its way), it arrives as a new socket bound to the same address, the worker's own."""

    def __reduce__(self) -> tuple[Any, ...]:
        host, port = self.getsockname()[:2]
        return reuse_port_socket, (host, port)


def reuse_port_socket(host: str, port: int) -> ReusePortSocket:
    """A TCP socket bound to ``host:port`` with ``SO_REUSEPORT`` (not yet listening).

    Raises:
        OSError: when the address is taken by a socket without ``SO_REUSEPORT``, or cannot be
            bound.
    """
    sock = ReusePortSocket(_family(host), socket.SOCK_STREAM)
    return _bound(sock, host, port, reuse_port=True)


_S = TypeVar("_S", bound=socket.socket)


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _bound(sock: _S, host: str, port: int, *, reuse_port: bool) -> _S:
    """``sock`` bound to ``host:port`` (``SO_REUSEADDR``, and ``SO_REUSEPORT`` when asked), or
    closed and the error raised."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _log_listening(host: str, sock: socket.socket) -> None:
    """uvicorn's line for a socket it binds itself, which it leaves out for one handed to it."""
    logging.getLogger("uvicorn.error").info(
        "Uvicorn running on http://%s:%d (Press CTRL+C to quit)",
        f"[{host}]" if ":" in host else host,
        sock.getsockname()[1],
    )


def serve(app: FastAPI, *, host: str, port: int, workers: int, **options: Any) -> None:
    """Serves ``app`` in this process (one worker), or ``workers`` processes that each build the
    API from the environment (``app_from_env``), until SIGINT or SIGTERM.

    Raises:
        OSError: when the port cannot be bound.
    """
    if workers == 1:
        # Bound here, not by uvicorn: uvicorn logs a taken port and exits 3 once the app's startup
        # (migrations) has run; this raises before anything starts.
        config = uvicorn.Config(app, host=host, port=port, **options)
        sock = _bound(socket.socket(_family(host)), host, port, reuse_port=False)
        try:
            _log_listening(host, sock)
            uvicorn.Server(config).run([sock])
        finally:
            sock.close()
        return
    config = uvicorn.Config(
        APP_FACTORY, factory=True, host=host, port=port, workers=workers, **options
    )
    if hasattr(socket, "SO_REUSEPORT"):
        # Held by the supervisor, bound but never listening: it keeps the port from another
        # program and gives every worker the same address (port 0 resolved once).
        listener: socket.socket = reuse_port_socket(host, port)
        _log_listening(host, listener)
    else:  # pragma: no cover - Windows: one shared socket
        listener = config.bind_socket()
    # The workers' counters go to files in one directory, so that /metrics adds them up whichever
    # worker a scrape reaches (prometheus_client's multiprocess mode, chosen by this variable
    # before a worker imports it). A fresh directory per run: old files would be added in too.
    metrics_dir = None
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(
            prefix="twin-bridge-metrics-"
        )
    try:
        Multiprocess(config, sockets=[listener]).run()
    finally:
        listener.close()
        if metrics_dir is not None:
            del os.environ["PROMETHEUS_MULTIPROC_DIR"]
            shutil.rmtree(metrics_dir, ignore_errors=True)
