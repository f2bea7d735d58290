"""The one anvil launcher: the tests, the benchmarks, the soak, the fault suite and the testnet
rehearsal start their anvil here, and ``twin-bridge dev`` builds its anvil's command line here.

``AnvilOptions`` is what differs between them (port, chain id, hardfork, block gas limit, accounts,
mnemonic, block time, state file); ``Anvil`` is one started process that can be stopped and started
again from its ``--state`` file (its clock going on from its last block), and ``started_anvil``
(``local_anvil``: its web3) a throwaway one on a free loopback port. The binary is the npm package's
(``node_modules/.bin/anvil``, from ``@foundry-rs/anvil``: ``make node_modules``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

from web3 import Web3
from web3.types import RPCEndpoint

from bridge.chain.toolchain import REPO_ROOT
from bridge.testing.processes import (
    NotReadyError,
    free_port,
    spawn,
    stop_process,
    tail,
    wait_ready,
)

ANVIL: Final = REPO_ROOT / "node_modules" / ".bin" / "anvil"
HARDFORK: Final = "prague"
BLOCK_GAS_LIMIT: Final = 1_000_000_000
ACCOUNTS: Final = 30
"""Unlocked dev accounts of the test world (``bridge.testing.world.setup`` needs 30)."""
START_TIMEOUT_S: Final = 30.0
START_ATTEMPTS: Final = 3
"""``local_anvil`` tries this many free ports (another process may take one first)."""


class AnvilError(RuntimeError):
    """Anvil did not start, or a call or transaction on it failed."""


def require_anvil() -> Path:
    """The anvil binary.

    Raises:
        AnvilError: it is not installed.
    """
    if not os.access(ANVIL, os.X_OK):
        raise AnvilError(f"{ANVIL} not found: run `make node_modules`")
    return ANVIL


def rpc(w3: Web3, method: str, *params: Any) -> Any:
    """One JSON-RPC call's result (anvil's own methods included).

    Raises:
        AnvilError: the node answered with an error.
    """
    response = w3.provider.make_request(RPCEndpoint(method), list(params))
    if "error" in response:
        raise AnvilError(f"{method} failed: {response['error']}")
    return response.get("result")


def latest_timestamp(w3: Web3) -> int:
    """The timestamp of the newest block: the chain's "now"."""
    return int(w3.eth.get_block("latest")["timestamp"])


@dataclass(frozen=True)
class AnvilOptions:
    """An anvil's command-line options; ``None`` leaves anvil's own default."""

    host: str = "127.0.0.1"
    port: int = 0
    """0: a free port, chosen when the ``Anvil`` is made."""
    chain_id: int | None = None
    hardfork: str | None = HARDFORK
    gas_limit: int | None = BLOCK_GAS_LIMIT
    accounts: int | None = ACCOUNTS
    mnemonic: str | None = None
    block_time: float | None = None
    """Seconds between blocks; ``None``: a block per transaction."""
    state: Path | None = None
    """Loaded at start when it exists, written at exit (and every ``state_interval`` s)."""
    state_interval: int | None = None

    def argv(self, *, port: int | None = None, mining: bool = True) -> list[str]:
        """The command line (``port`` overrides ``self.port``; ``mining=False``: no block until
        the caller turns mining on)."""
        chosen: list[tuple[str, object | None]] = [
            ("--host", self.host),
            ("--port", self.port if port is None else port),
            ("--chain-id", self.chain_id),
            ("--hardfork", self.hardfork),
            ("--gas-limit", self.gas_limit),
            ("--accounts", self.accounts),
            ("--mnemonic", self.mnemonic),
            ("--state", self.state),
            ("--state-interval", self.state_interval),
        ]
        if mining and self.block_time is not None:
            chosen.append(("--block-time", f"{self.block_time:g}"))
        argv = [str(ANVIL)]
        for flag, value in chosen:
            if value is not None:
                argv += [flag, str(value)]
        return argv if mining else [*argv, "--no-mining"]


class Anvil:
    """An anvil process on one port, kept across restarts: with ``options.state``, stopping it
    (SIGTERM) writes its state file and starting it again loads it (the same chain, blocks,
    receipts and balances), its clock going on from its last block as a real chain's would.

    Its output goes to ``log`` (appended) or to a temporary file; ``tail()`` reads it back.
    """

    def __init__(
        self,
        options: AnvilOptions | None = None,
        *,
        log: Path | None = None,
        rpc_timeout: float = 60.0,
        start_timeout: float = START_TIMEOUT_S,
    ) -> None:
        self.options = options or AnvilOptions()
        self.port = self.options.port or free_port(self.options.host)
        self.url = f"http://{self.options.host}:{self.port}"
        self.w3 = Web3(Web3.HTTPProvider(self.url, request_kwargs={"timeout": rpc_timeout}))
        self.proc: subprocess.Popen[bytes] | None = None
        self.start_timeout = start_timeout
        self._log_path = log
        self.log: IO[bytes] = (
            log.open("ab") if log is not None else tempfile.TemporaryFile()  # noqa: SIM115
        )  # closed in close()
        self._last_time: int | None = None

    def __enter__(self) -> Anvil:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Starts anvil and waits until it answers JSON-RPC.

        Raises:
            AnvilError: the binary is missing, or anvil exited or did not answer in time.
        """
        require_anvil()
        last_time = self._last_time
        argv = self.options.argv(port=self.port, mining=last_time is None)
        self.proc = proc = spawn(argv, self.log)
        try:
            wait_ready(
                proc,
                self.w3.is_connected,
                what=f"anvil on {self.url}",
                log=self._log_path or self.log,
                timeout=self.start_timeout,
                poll_s=0.05,
            )
        except NotReadyError as exc:
            stop_process(proc)
            raise AnvilError(str(exc)) from None
        if last_time is not None:
            self._resume_clock(last_time)

    def _resume_clock(self, last_time: int) -> None:
        """anvil forgets its clock offset (``evm_increaseTime``) across a restart: the next block
        comes one second after the last one, then mining goes on as configured."""
        rpc(self.w3, "evm_setNextBlockTimestamp", last_time + 1)
        if self.options.block_time is None:
            rpc(self.w3, "evm_setAutomine", True)
        else:
            rpc(self.w3, "evm_setIntervalMining", self.options.block_time)
        rpc(self.w3, "evm_mine")

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Stops anvil (``sig`` first; SIGKILL after 20 s), remembering its last block's time."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(Exception):
            self._last_time = latest_timestamp(self.w3)
        os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def tail(self, lines: int = 20) -> str:
        self.log.flush()
        return tail(self._log_path or self.log, lines)

    def close(self) -> None:
        self.stop()
        self.log.close()


@contextlib.contextmanager
def started_anvil(options: AnvilOptions | None = None) -> Iterator[Anvil]:
    """A fresh anvil on a free loopback port (tried ``START_ATTEMPTS`` times), stopped when the
    block exits (also on error)."""
    last_error: AnvilError | None = None
    for _attempt in range(START_ATTEMPTS):
        anvil = Anvil(options)
        try:
            anvil.start()
        except AnvilError as exc:
            anvil.close()
            require_anvil()  # no retry when there is nothing to start
            last_error = exc
            continue
        try:
            yield anvil
        finally:
            anvil.close()
        return
    raise AnvilError(f"anvil did not start after {START_ATTEMPTS} attempts: {last_error}")


@contextlib.contextmanager
def local_anvil(options: AnvilOptions | None = None) -> Iterator[Web3]:
    """``started_anvil``'s web3 connection (its URL: ``w3.provider.endpoint_uri``)."""
    with started_anvil(options) as anvil:
        yield anvil.w3
