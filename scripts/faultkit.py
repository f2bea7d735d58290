"""Fault-injection tools on loopback, for the fault suite and the soak: an anvil that can be stopped
and started again from its ``--state`` file (its clock going on from its last block), and a TCP
proxy in front of it that can go down and come back."""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any

from web3 import Web3

from scripts.bench_gas import ANVIL, ANVIL_ACCOUNTS, BLOCK_GAS_LIMIT, HARDFORK


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FaultKitError(RuntimeError):
    """A fault tool could not do its part."""


def rpc(w3: Web3, method: str, *params: Any) -> Any:
    """One JSON-RPC call; raises ``FaultKitError`` with the node's error."""
    response = w3.provider.make_request(method, list(params))  # type: ignore[arg-type]
    if "error" in response:
        raise FaultKitError(f"{method} failed: {response['error']}")
    return response.get("result")


# ---------------------------------------------------------------- anvil, stoppable


class Anvil:
    """An anvil on a fixed port; with ``state``, stopping it (SIGTERM) writes its state file and
    starting it again loads it: the same chain, blocks, receipts and balances."""

    def __init__(self, *, state: Path | None = None, block_time: float | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.state = state
        self.block_time = block_time
        self.proc: subprocess.Popen[bytes] | None = None
        self.log: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        self.w3 = Web3(Web3.HTTPProvider(self.url, request_kwargs={"timeout": 60}))
        self._last_time: int | None = None

    def start(self) -> None:
        command = [
            str(ANVIL),
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--hardfork", HARDFORK,
            "--gas-limit", str(BLOCK_GAS_LIMIT),
            "--accounts", str(ANVIL_ACCOUNTS),
        ]  # fmt: skip
        if self.state is not None:
            command += ["--state", str(self.state)]
        last_time = self._last_time
        restarting = last_time is not None
        if restarting:
            command += ["--no-mining"]  # until its clock is set again (below)
        elif self.block_time is not None:
            command += ["--block-time", str(self.block_time)]
        self.proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            command,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise FaultKitError(f"anvil exited:\n{self.tail()}")
            if self.w3.is_connected():
                if last_time is not None:
                    # anvil forgets its clock offset (evm_increaseTime) across a restart: the
                    # chain's time goes on from its last block, as a real chain's would.
                    rpc(self.w3, "evm_setNextBlockTimestamp", last_time + 1)
                    if self.block_time is None:
                        rpc(self.w3, "evm_setAutomine", True)
                    else:
                        rpc(self.w3, "evm_setIntervalMining", self.block_time)
                    rpc(self.w3, "evm_mine")
                return
            time.sleep(0.05)
        raise FaultKitError(f"anvil did not start:\n{self.tail()}")

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(Exception):
            self._last_time = int(self.w3.eth.get_block("latest")["timestamp"])
        os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def tail(self) -> str:
        self.log.seek(0)
        return "\n".join(self.log.read().decode(errors="replace").splitlines()[-20:])

    def close(self) -> None:
        self.stop()
        self.log.close()


# ---------------------------------------------------------------- a TCP proxy that can go down


class Proxy:
    """Forwards a local port to ``target``; ``down()`` closes the port and every connection
    through it (the node "goes away"), ``up()`` listens again on the same port."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        self._thread = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        self._thread.start()

    def down(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
            listener.close()
        with self._lock:
            for conn in self._conns:
                conn.close()
            self._conns.clear()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns.update((client, upstream))
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        sel = selectors.DefaultSelector()
        try:
            sel.register(a, selectors.EVENT_READ, b)
            sel.register(b, selectors.EVENT_READ, a)
            while True:
                for key, _ in sel.select(timeout=1):
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    key.data.sendall(data)
        except (OSError, ValueError):
            return
        finally:
            sel.close()
            with self._lock:
                for s in (a, b):
                    self._conns.discard(s)
                    s.close()
