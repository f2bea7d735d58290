"""``writer_lock``: writers of one SQLite file queue on a lock shared by threads and processes."""

from __future__ import annotations

import subprocess
import sys
from contextlib import nullcontext
from pathlib import Path

from sqlalchemy import create_engine

from bridge.store.engine import make_engine, writer_lock

_TRY_LOCK = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
except BlockingIOError:
    print("busy")
else:
    print("free")
"""


def _other_process_sees(path: Path) -> str:
    out = subprocess.run(
        [sys.executable, "-c", _TRY_LOCK, str(path)], capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def test_a_sqlite_writer_holds_the_file_lock_against_other_processes(tmp_path: Path) -> None:
    database = tmp_path / "bridge.db"
    engine = make_engine(f"sqlite:///{database}")
    lock = writer_lock(engine)
    assert writer_lock(engine) is lock  # one per engine
    with lock:
        assert _other_process_sees(Path(f"{database}-writer.lock")) == "busy"
    assert _other_process_sees(Path(f"{database}-writer.lock")) == "free"
    engine.dispose()


def test_postgresql_writers_take_no_lock() -> None:
    engine = create_engine("postgresql+psycopg://postgres@127.0.0.1:1/none")
    assert isinstance(writer_lock(engine), nullcontext)
