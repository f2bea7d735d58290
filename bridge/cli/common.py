"""What every ``twin-bridge`` command shares: the consoles, failing with an exit code, the
settings, the migrated store, and stopping on SIGTERM or Ctrl-C."""

from __future__ import annotations

import signal
import threading

import typer
from pydantic import ValidationError
from rich.console import Console

from bridge.settings import Settings
from bridge.store import migrate
from bridge.store.repository import Store


def stdout() -> Console:
    """The console for a command's results."""
    return Console(highlight=False)


def stderr() -> Console:
    """The console for progress, notes and errors."""
    return Console(stderr=True, highlight=False)


def fail(message: str, code: int) -> typer.Exit:
    """Prints ``message`` in red on stderr; the caller raises the exit with ``code`` it returns."""
    stderr().print(message, style="red", markup=False, soft_wrap=True)
    return typer.Exit(code)


def no_secret_file(option: str) -> str:
    """What to say when ``option`` names no readable file: never the value given, which may be a
    key or a password typed in the wrong place."""
    return (
        f"{option} names no readable file; the value given is not repeated here (it may be a "
        "secret typed in the wrong place)"
    )


def load_settings() -> Settings:
    """The ``TWIN_BRIDGE_*`` settings; exits 2 saying what is wrong with them."""
    try:
        return Settings()
    except ValidationError as exc:
        raise fail(f"invalid TWIN_BRIDGE_* settings:\n{exc}", 2) from exc


def with_deployment(settings: Settings) -> Settings:
    """``settings`` with the ledger of ``TWIN_BRIDGE_DEPLOYMENT`` once the manifest is checked
    against the chain (see :func:`bridge.deploy.manifest.apply_deployment`); exits 2 if it
    does not match."""
    from bridge.deploy.errors import DeploymentError
    from bridge.deploy.manifest import apply_deployment

    try:
        return apply_deployment(settings)
    except DeploymentError as exc:
        raise fail(str(exc), 2) from exc


def migrated_store(settings: Settings) -> Store:
    """The bridge's store, its database migrated to the latest schema first."""
    url = settings.resolved_database_url
    migrate.upgrade(url)
    return Store.from_url(url)


def stop_on_signals() -> threading.Event:
    """An event set by the first SIGTERM or SIGINT (Ctrl-C): the long-running commands stop on
    it gracefully instead of being killed mid-step."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    return stop
