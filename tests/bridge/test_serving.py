"""``twin-bridge serve --workers N``: each worker listens on a ``SO_REUSEPORT`` socket of its own,
so the kernel spreads a burst of keep-alive connections over the workers (found from ``/proc``:
which worker holds each established connection); SIGTERM stops the supervisor and every worker; a
port taken by another program is refused with one line and exit code 1. The workers start on a
database nobody migrated, so they migrate it at once (taking turns)."""

from __future__ import annotations

import http.client
import json
import os
import pickle
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.reduction import ForkingPickler
from pathlib import Path

import pytest
from sqlalchemy import inspect

from bridge.api.serving import ReusePortSocket, reuse_port_socket
from bridge.store.engine import make_engine
from bridge.store.models import Base
from bridge.testing import AnvilChain, free_port

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
TWIN_BRIDGE = REPO_ROOT / ".venv" / "bin" / "twin-bridge"
START_TIMEOUT_S = 60.0
CONNECTIONS = 16
TCP_ESTABLISHED, TCP_LISTEN = "01", "0A"
READY = {"status": "ready", "checks": {"store": "ok", "chain": "ok"}}


# ---------------------------------------------------------------- /proc


@dataclass(frozen=True)
class TcpSocket:
    local_port: int
    remote_port: int
    state: str
    inode: int


def tcp_sockets() -> list[TcpSocket]:
    """Every TCP socket of this network namespace listed in ``/proc/net/tcp`` and ``tcp6``."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            next(lines)  # the header
            for line in lines:
                fields = line.split()
                local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
                found.append(
                    TcpSocket(
                        int(local.rsplit(":", 1)[1], 16),
                        int(remote.rsplit(":", 1)[1], 16),
                        state,
                        int(inode),
                    )
                )
    return found


def socket_inodes(pid: int) -> set[int]:
    """The inodes of the sockets process ``pid`` has open."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[len("socket:[") : -1]))
    return inodes


def _stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state, ppid, pgrp, ...)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None


def live_processes() -> dict[int, list[str]]:
    """Every process that is not a zombie, with its stat fields."""
    found = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            fields = _stat(int(name))
            if fields is not None and fields[0] != "Z":
                found[int(name)] = fields
    return found


def workers_of(supervisor: int) -> list[int]:
    """The supervisor's worker processes: its children started by multiprocessing's spawn (not
    its resource tracker)."""
    workers = []
    for pid, fields in live_processes().items():
        if int(fields[1]) != supervisor:
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                argv = cmdline.read().split(b"\0")
        except FileNotFoundError:
            continue
        if b"--multiprocessing-fork" in argv:
            workers.append(pid)
    return sorted(workers)


def group_members(pgid: int) -> list[int]:
    return sorted(pid for pid, fields in live_processes().items() if int(fields[2]) == pgid)


# ---------------------------------------------------------------- the server


def serve_env(anvil: AnvilChain, tmp_path: Path) -> dict[str, str]:
    """The environment of ``scripts/bench_ingest.py``'s servers: ours less ``TWIN_BRIDGE_*``, the
    anvil's ledger and a fresh SQLite file (not migrated)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWIN_BRIDGE_")}
    env.update(
        {
            "TWIN_BRIDGE_DATA_DIR": str(tmp_path / "data"),
            "TWIN_BRIDGE_DATABASE_URL": f"sqlite:///{tmp_path / 'bridge.db'}",
            "TWIN_BRIDGE_RPC_URL": anvil.url,
            "TWIN_BRIDGE_LEDGER_ADDRESS": anvil.world.ledger.address,
        }
    )
    return env


def serve_command(port: int, workers: int) -> list[str]:
    return [
        str(TWIN_BRIDGE), "serve", "--host", "127.0.0.1", "--port", str(port),
        "--workers", str(workers), "--no-access-log",
    ]  # fmt: skip


@contextmanager
def serving(
    env: dict[str, str], port: int, workers: int, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """``twin-bridge serve`` in a process group of its own, killed with its group at the end if
    the test has not stopped it."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            serve_command(port, workers),
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        elif group_members(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)


def get_readyz(conn: http.client.HTTPConnection) -> tuple[int, object]:
    conn.request("GET", "/readyz")
    response = conn.getresponse()
    return response.status, json.loads(response.read())


def wait_ready(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        assert proc.poll() is None, f"serve exited with {proc.returncode}:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"serve not ready:\n{log.read_text()}"
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            if get_readyz(conn)[0] == 200:
                return
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.1)


def listening_inodes(port: int) -> set[int]:
    return {s.inode for s in tcp_sockets() if s.local_port == port and s.state == TCP_LISTEN}


# ---------------------------------------------------------------- tests


def test_workers_share_the_port_and_the_kernel_spreads_connections_over_them(
    anvil: AnvilChain, tmp_path: Path
) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    with serving(serve_env(anvil, tmp_path), port, 2, log) as proc:
        wait_ready(proc, port, log)
        workers = workers_of(proc.pid)
        assert len(workers) == 2, log.read_text()
        # Each worker listens on a socket of its own (one shared socket would be one entry); the
        # supervisor's is bound, never listening. Both listening: both have migrated and started.
        deadline = time.monotonic() + START_TIMEOUT_S
        while len(listening := listening_inodes(port)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(listening) == 2
        assert [len(socket_inodes(w) & listening) for w in workers] == [1, 1]
        assert not socket_inodes(proc.pid) & listening

        conns = [
            http.client.HTTPConnection("127.0.0.1", port, timeout=10) for _ in range(CONNECTIONS)
        ]
        try:
            for conn in conns:
                assert get_readyz(conn) == (200, READY)
            client_ports = {conn.sock.getsockname()[1] for conn in conns}
            assert len(client_ports) == CONNECTIONS
            # The server's end of each of our connections, still open (keep-alive).
            server_ends = {
                s.inode
                for s in tcp_sockets()
                if s.local_port == port
                and s.remote_port in client_ports
                and s.state == TCP_ESTABLISHED
            }
            assert len(server_ends) == CONNECTIONS
            held = {worker: len(socket_inodes(worker) & server_ends) for worker in workers}
            assert sum(held.values()) == CONNECTIONS, held
            assert all(count >= 1 for count in held.values()), held
            # Every connection keeps answering from its worker.
            for conn in conns:
                assert get_readyz(conn) == (200, READY)
        finally:
            for conn in conns:
                conn.close()

        # The workers migrated the fresh database once between them.
        engine = make_engine(f"sqlite:///{tmp_path / 'bridge.db'}")
        try:
            tables = inspect(engine).get_table_names()
        finally:
            engine.dispose()
        assert sorted(tables) == sorted([*Base.metadata.tables, "alembic_version"])

        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()
        deadline = time.monotonic() + 10
        while group_members(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert group_members(proc.pid) == []
        assert [w for w in workers if _stat(w) is not None] == []
        assert listening_inodes(port) == set()
    text = log.read_text()
    assert f"Uvicorn running on http://127.0.0.1:{port}" in text
    assert text.count("Application startup complete.") == 2
    assert "Traceback" not in text


def test_one_worker_serves_in_the_command_s_own_process_until_sigterm(
    anvil: AnvilChain, tmp_path: Path
) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    with serving(serve_env(anvil, tmp_path), port, 1, log) as proc:
        wait_ready(proc, port, log)
        assert workers_of(proc.pid) == []
        listening = listening_inodes(port)
        assert len(listening) == 1
        assert listening <= socket_inodes(proc.pid)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            assert [get_readyz(conn) for _ in range(3)] == [(200, READY)] * 3
        finally:
            conn.close()
        os.kill(proc.pid, signal.SIGTERM)
        # uvicorn's server, stopped by a signal, raises it again once shut down.
        assert proc.wait(30) == -signal.SIGTERM, log.read_text()
        assert listening_inodes(port) == set()
    text = log.read_text()
    assert f"Uvicorn running on http://127.0.0.1:{port}" in text
    assert "Traceback" not in text


def metric_value(text: str, sample: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_metrics_add_up_the_workers_whichever_a_scrape_reaches(
    anvil: AnvilChain, tmp_path: Path
) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    healthz = (
        "twin_bridge_http_request_duration_seconds_count"
        '{method="GET",route="/healthz",status="200"}'
    )
    with serving(serve_env(anvil, tmp_path), port, 2, log) as proc:
        wait_ready(proc, port, log)
        workers = workers_of(proc.pid)
        deadline = time.monotonic() + START_TIMEOUT_S  # both started, not only the first
        while len(listening_inodes(port)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        answered_by: set[int] = set()
        for _ in range(CONNECTIONS):  # each on a fresh connection: spread over both workers
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            try:
                conn.request("GET", "/healthz")
                response = conn.getresponse()
                assert (response.status, json.loads(response.read())) == (200, {"status": "ok"})
                server_end = {
                    s.inode
                    for s in tcp_sockets()
                    if s.local_port == port
                    and s.remote_port == conn.sock.getsockname()[1]
                    and s.state == TCP_ESTABLISHED
                }
                answered_by.update(w for w in workers if socket_inodes(w) & server_end)
            finally:
                conn.close()
        assert sorted(answered_by) == workers  # both workers answered some
        scrapes = []
        for _ in range(8):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            try:
                conn.request("GET", "/metrics")
                response = conn.getresponse()
                assert response.status == 200
                scrapes.append(metric_value(response.read().decode(), healthz))
            finally:
                conn.close()
        # Every scrape, whichever worker answered it, counts all 16 requests of both workers.
        assert scrapes == [float(CONNECTIONS)] * 8
        # The workers keep their values in a directory the supervisor made for this run ...
        with open(f"/proc/{workers[0]}/environ", "rb") as environ:
            variables = dict(
                entry.split(b"=", 1) for entry in environ.read().split(b"\0") if b"=" in entry
            )
        metrics_dir = Path(variables[b"PROMETHEUS_MULTIPROC_DIR"].decode())
        assert metrics_dir.name.startswith("twin-bridge-metrics-")
        assert {p.name for p in metrics_dir.iterdir()} >= {f"histogram_{w}.db" for w in workers}
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()
    # ... and removes when it stops: a later run does not add them in again.
    assert not metrics_dir.exists()
    assert "Traceback" not in log.read_text()


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_refuses_a_port_another_program_listens_on(
    anvil: AnvilChain, tmp_path: Path, workers: int
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            serve_command(port, workers),
            cwd=REPO_ROOT,
            env=serve_env(anvil, tmp_path),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S,
            start_new_session=True,
        )
        assert (result.returncode, result.stdout) == (1, "")
        # One line, and nothing started (no worker, no application startup).
        assert result.stderr == (
            f"cannot listen on 127.0.0.1:{port}: [Errno 98] Address already in use\n"
        )
        assert listening_inodes(port) == {os.fstat(taken.fileno()).st_ino}
    assert not (tmp_path / "bridge.db").exists()


@pytest.mark.parametrize(
    "dumps",
    [pickle.dumps, lambda obj: ForkingPickler.dumps(obj).tobytes()],
    ids=["pickle", "ForkingPickler"],
)
def test_a_reuse_port_socket_unpickles_as_a_new_socket_on_the_same_address(
    dumps: object,
) -> None:
    with reuse_port_socket("127.0.0.1", 0) as original:
        port = original.getsockname()[1]
        assert port != 0
        copy = pickle.loads(dumps(original))  # type: ignore[operator]  # noqa: S301 - our own bytes
        with copy:
            assert type(copy) is ReusePortSocket
            assert copy is not original
            assert copy.fileno() != original.fileno()
            assert copy.getsockname() == ("127.0.0.1", port)
            assert copy.family == socket.AF_INET
            assert copy.type == socket.SOCK_STREAM
            assert copy.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
            assert copy.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 1
            # Two listeners on one port: the kernel spreads connections between them.
            original.listen()
            copy.listen()
            assert len(listening_inodes(port)) == 2


def test_a_reuse_port_socket_cannot_bind_a_port_a_plain_socket_listens_on() -> None:
    with socket.socket() as plain:
        plain.bind(("127.0.0.1", 0))
        plain.listen()
        port = plain.getsockname()[1]
        with pytest.raises(OSError, match="Address already in use") as caught:
            reuse_port_socket("127.0.0.1", port)
    assert caught.value.errno == 98
