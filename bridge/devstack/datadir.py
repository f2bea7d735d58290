"""The dev stack's data directory: its lock (one stack per directory), ``dev.json`` (how to reach
and use the running stack, read by ``doctor``, ``audit`` and ``model`` as :class:`RunningStack`),
the seed marker, and the bridge database of an earlier chain."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bridge.devstack.options import AlreadyRunningError, DevError, DevOptions


@contextlib.contextmanager
def data_dir_lock(options: DevOptions) -> Iterator[None]:
    """Holds ``<data_dir>/dev.lock`` (released by the kernel if this process dies).

    Raises:
        AlreadyRunningError: another process holds it; the message names it and its API.
    """
    options.data_dir.mkdir(parents=True, exist_ok=True)
    handle = options.lock_file.open("a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            raise _already_running(options, handle.read().strip()) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()


def _already_running(options: DevOptions, holder: str) -> AlreadyRunningError:
    running = read_dev_json(options.dev_json) or {}
    api = running.get("api_url", "its API")
    return AlreadyRunningError(
        f"a Twin Bridge dev stack is already running from {options.data_dir} "
        f"({holder or 'another process'}, API at {api}). Use that one, stop it with Ctrl-C in its "
        "terminal, or start a second one with another TWIN_BRIDGE_DATA_DIR and other ports "
        "(--rpc-port, --api-port)."
    )


def read_dev_json(path: Path) -> dict[str, Any] | None:
    """A JSON object file of the data directory (``dev.json``, ``seed.json``), or None."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Replaces ``path`` at once, readable by its owner only (it holds keys)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    tmp.chmod(0o600)
    tmp.replace(path)


def seeded_ledger(options: DevOptions) -> str | None:
    """The ledger whose demo was seeded completely, if any."""
    marker = read_dev_json(options.seed_file) or {}
    ledger = marker.get("ledger")
    return ledger if isinstance(ledger, str) else None


def mark_seeded(options: DevOptions, ledger: str) -> None:
    """Records that the demo on ``ledger`` is complete (its brands' keys are saved)."""
    write_json(options.seed_file, {"ledger": ledger, "at": datetime.now(UTC).isoformat()})


def timestamp() -> str:
    """The suffix of a file kept aside (``<name>.<timestamp>.old``)."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S")


def retire_sqlite_database(data_dir: Path) -> str | None:
    """Moves the data directory's SQLite database (with its WAL files) aside: a new chain makes
    it meaningless. Returns the suffix it was kept under, or None when there was none."""
    db = data_dir / "bridge.db"
    if not db.exists():
        return None
    stamp = timestamp()
    for suffix in ("", "-wal", "-shm"):
        path = db.with_name(db.name + suffix)
        if path.exists():
            path.rename(path.with_name(f"{path.name}.{stamp}.old"))
    return stamp


@dataclass(frozen=True)
class RunningStack:
    """What ``doctor``, ``audit`` and ``model`` take from a running dev stack's ``dev.json``."""

    dev_json: Path
    api_url: str
    rpc_url: str
    chain_id: int
    deployment: Path
    """The stack's deployment manifest (in its data directory, not ``deploy/deployments``)."""
    roles: Mapping[str, str] = field(default_factory=dict)
    """``admin``, ``registrar``, ``attester``, ``relayer``, ``pauser`` -> the dev account."""
    bridge_keys: Mapping[str, str] = field(default_factory=dict)
    """``attester`` and ``relayer`` -> the anvil dev key the stack's worker signs with."""
    database_url: str | None = None


def holds_lock(options: DevOptions) -> bool:
    """Whether a dev stack holds ``options``' data directory now (its ``dev.lock``; the kernel
    releases it when the stack dies, so a stale ``dev.json`` does not count)."""
    try:
        handle = options.lock_file.open("r", encoding="utf-8")
    except FileNotFoundError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def running_stack(data_dir: Path) -> RunningStack | None:
    """The dev stack running from ``data_dir`` once it is ready, else None."""
    try:
        return require_running_stack(data_dir)
    except DevError:
        return None


def require_running_stack(data_dir: Path) -> RunningStack:
    """The dev stack running from ``data_dir`` (``--dev``).

    Raises:
        DevError: none runs there, it is still starting, or its ``dev.json`` lacks what is read.
    """
    options = DevOptions(data_dir=data_dir)
    info = read_dev_json(options.dev_json)
    if info is None or not holds_lock(options):
        raise DevError(
            f"no Twin Bridge dev stack is running from {data_dir}: start one with `make run` (or "
            "`twin-bridge dev`) with the same TWIN_BRIDGE_DATA_DIR"
        )
    if info.get("ready") is not True:
        raise DevError(f"the dev stack running from {data_dir} is still starting: try again soon")
    try:
        return RunningStack(
            dev_json=options.dev_json,
            api_url=str(info["api_url"]),
            rpc_url=str(info["rpc_url"]),
            chain_id=int(info["chain_id"]),
            deployment=Path(str(info["deployment"])),
            roles={str(k): str(v) for k, v in dict(info.get("roles", {})).items()},
            bridge_keys={str(k): str(v) for k, v in dict(info.get("bridge_keys", {})).items()},
            database_url=info.get("database_url"),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise DevError(
            f"{options.dev_json} lacks {exc}: restart the dev stack to write it again"
        ) from None
