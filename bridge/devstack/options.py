"""What one ``twin-bridge dev`` stack is: its data directory, ports and block time, the paths
inside the directory, and the errors it stops with."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

from bridge.errors import BridgeError

DEV_CHAIN_ID: Final = 31337


class DevError(BridgeError):
    """The dev stack could not start (the message says why, in plain words)."""


class AlreadyRunningError(DevError):
    """Another dev stack holds this data directory."""


@dataclass(frozen=True)
class DevOptions:
    data_dir: Path
    host: str = "127.0.0.1"
    rpc_port: int = 8545
    api_port: int = 8000
    block_time: float = 1.0
    """Seconds between blocks (transactions wait for the next block)."""

    @property
    def rpc_url(self) -> str:
        return f"http://{self.host}:{self.rpc_port}"

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.api_port}"

    @property
    def dev_json(self) -> Path:
        return self.data_dir / "dev.json"

    @property
    def lock_file(self) -> Path:
        return self.data_dir / "dev.lock"

    @property
    def state_file(self) -> Path:
        return self.data_dir / "chain" / "state.json"

    @property
    def deployment_file(self) -> Path:
        return self.data_dir / "deployment.json"

    @property
    def seed_file(self) -> Path:
        return self.data_dir / "seed.json"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def keys_dir(self) -> Path:
        """Keystores of demo accounts for the README's examples (``twin-bridge dev env``)."""
        return self.data_dir / "keys"
