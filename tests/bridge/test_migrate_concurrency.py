"""``migrate.upgrade`` from several processes at once on one fresh database (API workers starting
together): they take turns (SQLite: the store's writer lock; PostgreSQL: an advisory lock), so one
of them migrates, the others find the database at the head, and every process succeeds."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from bridge.store import migrate
from bridge.store.engine import make_engine
from bridge.store.models import Base

from .conftest import PostgresServer

REPO_ROOT = Path(__file__).resolve().parents[2]
PROCESSES = 4
ROUNDS = 3
"""Fresh databases raced on by the same processes, one after the other: without the locks, a
round can pass by luck (one process scheduled well ahead of the others), three in a row hardly."""
TIMEOUT_S = 60.0

# Imports first, then waits for each round's go file, so the upgrades of a round start together
# (not staggered by the interpreters' start-up, nor by the last round); alembic's log tells which
# process ran which migration.
CHILD = """
import logging, sys, time
from pathlib import Path
from bridge.store import migrate
logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
flags, urls = Path(sys.argv[1]), sys.argv[2:]
name = flags.name
flags.with_name(f"{name}-ready").touch()
for i, url in enumerate(urls):
    go = flags.with_name(f"go-{i}")
    while not go.exists():
        time.sleep(0.002)
    print(f"round {i}", file=sys.stderr, flush=True)
    migrate.upgrade(url)
    flags.with_name(f"{name}-done-{i}").touch()
"""


@pytest.fixture
def fresh_db_urls(
    empty_db_url: str, backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> list[str]:
    """``ROUNDS`` empty databases of the backend, ``empty_db_url`` first."""
    if backend == "sqlite":
        return [
            empty_db_url,
            *(f"sqlite:///{tmp_path / f'round-{i}.db'}" for i in range(1, ROUNDS)),
        ]
    server: PostgresServer = request.getfixturevalue("postgres")
    return [empty_db_url, *(server.new_database() for _ in range(1, ROUNDS))]


def _wait_for(paths: list[Path], procs: list[subprocess.Popen[str]], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not all(path.exists() for path in paths):
        if any(proc.poll() is not None for proc in procs):
            return  # a process failed: its output tells
        assert time.monotonic() < deadline, f"the processes did not {what}"
        time.sleep(0.005)


def test_processes_upgrading_one_fresh_database_at_once_take_turns(
    fresh_db_urls: list[str], tmp_path: Path
) -> None:
    flags = [tmp_path / "flags" / f"p{i}" for i in range(PROCESSES)]
    flags[0].parent.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWIN_BRIDGE_")}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(flag), *fresh_db_urls],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for flag in flags
    ]
    try:
        _wait_for([flag.with_name(f"{flag.name}-ready") for flag in flags], procs, "start")
        for i in range(ROUNDS):
            flags[0].with_name(f"go-{i}").touch()
            _wait_for([flag.with_name(f"{flag.name}-done-{i}") for flag in flags], procs, "finish")
        outputs = [proc.communicate(timeout=TIMEOUT_S) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    errors = [[line for line in err.splitlines() if "Error" in line][-1:] for _out, err in outputs]
    assert [proc.returncode for proc in procs] == [0] * PROCESSES, errors
    assert [out for out, _err in outputs] == [""] * PROCESSES

    for i, url in enumerate(fresh_db_urls):
        engine = make_engine(url)
        try:
            script = ScriptDirectory.from_config(migrate.alembic_config(engine))
            revisions = len(list(script.walk_revisions()))
            # One process ran every migration; the others found the database at the head.
            ran = sorted(
                err.split(f"round {i}\n")[1].split(f"round {i + 1}\n")[0].count("Running upgrade ")
                for _out, err in outputs
            )
            assert ran == [0] * (PROCESSES - 1) + [revisions], outputs
            tables = inspect(engine).get_table_names()
            assert sorted(tables) == sorted([*Base.metadata.tables, "alembic_version"])
            with engine.connect() as conn:
                versions = conn.execute(text("SELECT version_num FROM alembic_version")).all()
            assert [tuple(row) for row in versions] == [("0008",)]
            assert script.get_current_head() == "0008"
        finally:
            engine.dispose()
