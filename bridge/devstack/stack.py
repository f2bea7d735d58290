"""``twin-bridge dev``: the whole system on this machine, in one command.

It starts anvil (the npm binary) with its state in the data directory, deploys the ledger when the
chain has no matching deployment, seeds the demo world the first time, then runs the brand API, the
settlement worker and the indexer as child processes until Ctrl-C (or SIGTERM). Stopping saves the
chain's state; the next start resumes the same contracts, balances and history.

One stack per data directory: a second start finds the directory's lock held and says so.

``DevStack`` runs the steps; the pieces live beside it: ``bridge.devstack.options`` (ports, paths,
errors), ``datadir`` (the lock, ``dev.json``, the seed marker), ``children`` (the child
processes), ``deployment`` (reuse or deploy the ledger), ``demo`` (the seeded world), ``details``
(what ``dev.json`` says) and ``tryit`` (the text printed once the stack is up).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Mapping
from typing import Any, Final

import httpx
from rich.console import Console
from web3 import Web3

from bridge.chain.deploy import ACCESS_MANAGER, LEDGER, STABLECOIN, contract_at
from bridge.devstack.children import Child, port_free, spawn, wait_until
from bridge.devstack.datadir import (
    data_dir_lock,
    mark_seeded,
    retire_sqlite_database,
    write_json,
)
from bridge.devstack.demo import (
    ATTESTER,
    DEV_ACCOUNTS,
    DEV_MNEMONIC,
    RELAYER,
    Demo,
    dev_account,
    seed,
)
from bridge.devstack.deployment import DevDeployment, ensure_deployment
from bridge.devstack.details import dev_details, register_brands, saved_brands
from bridge.devstack.options import DEV_CHAIN_ID, DevError, DevOptions
from bridge.devstack.tryit import ready_lines
from bridge.settings import Settings
from bridge.testing.anvil import ANVIL, AnvilOptions

STATE_INTERVAL_S: Final = 10
"""Anvil also saves its state this often, so a crash loses at most this much chain history."""
SERVICES: Final = ("worker", "indexer")
"""The ``twin-bridge`` commands run beside the API."""


# ---------------------------------------------------------------- the stack


class DevStack:
    """Runs the dev stack in the foreground; ``run`` returns when ``stop`` is set."""

    def __init__(self, options: DevOptions, console: Console | None = None) -> None:
        self.options = options
        self.console = console or Console(highlight=False)
        self.children: list[Child] = []

    # -- helpers

    def _say(self, text: str, style: str | None = None) -> None:
        self.console.print(text, style=style, markup=False, soft_wrap=True)

    def _child_env(self, deployment: DevDeployment) -> dict[str, str]:
        # Settings the user chose (a PostgreSQL URL, batch sizes...) carry over; the chain,
        # contract and keys are the dev stack's own.
        env = dict(os.environ)
        env.update(
            {
                "TWIN_BRIDGE_DATA_DIR": str(self.options.data_dir),
                "TWIN_BRIDGE_RPC_URL": self.options.rpc_url,
                "TWIN_BRIDGE_LEDGER_ADDRESS": deployment.ledger,
                # each part checks the chain's code against the manifest before using it
                "TWIN_BRIDGE_DEPLOYMENT": str(self.options.deployment_file),
                # anvil's well-known dev keys (bridge.devstack.demo): public, chain 31337 only
                "TWIN_BRIDGE_ATTESTER_PRIVATE_KEY": dev_account(ATTESTER).key.hex(),
                "TWIN_BRIDGE_RELAYER_PRIVATE_KEY": dev_account(RELAYER).key.hex(),
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.setdefault("TWIN_BRIDGE_CONFIRMATIONS", "1")
        env.setdefault("TWIN_BRIDGE_BATCH_MAX_AGE", "PT1S")
        return env

    def _start_anvil(self) -> Child:
        options = self.options
        if not os.access(ANVIL, os.X_OK):
            raise DevError(f"{ANVIL} is missing: run `make node_modules` (or `make run`)")
        for port, what in ((options.rpc_port, "--rpc-port"), (options.api_port, "--api-port")):
            if not port_free(options.host, port):
                raise DevError(
                    f"port {port} on {options.host} is taken by another program; stop it or "
                    f"choose another port with {what}"
                )
        options.state_file.parent.mkdir(parents=True, exist_ok=True)
        argv = AnvilOptions(
            host=options.host,
            port=options.rpc_port,
            chain_id=DEV_CHAIN_ID,
            gas_limit=None,
            accounts=DEV_ACCOUNTS,
            mnemonic=DEV_MNEMONIC,
            block_time=options.block_time,
            state=options.state_file,
            state_interval=STATE_INTERVAL_S,
        ).argv()
        resumed = options.state_file.exists()
        child = spawn("anvil", argv, options.log_dir, os.environ)
        self.children.append(child)
        w3 = Web3(Web3.HTTPProvider(options.rpc_url, request_kwargs={"timeout": 30}))
        wait_until(child, w3.is_connected, "answering JSON-RPC")
        self._say(
            f"anvil on {options.rpc_url} (chain {DEV_CHAIN_ID}), "
            + (f"resumed at block {w3.eth.block_number}" if resumed else "new chain")
            + f", state in {options.state_file}"
        )
        return child

    def _retire_database(self, settings: Settings) -> None:
        """A new chain makes the old bridge database meaningless: move SQLite aside."""
        if settings.database_url is not None:
            return
        stamp = retire_sqlite_database(settings.data_dir)
        if stamp is not None:
            self._say(f"new chain: the previous bridge database was kept as bridge.db.{stamp}.old")

    def _seed(self, w3: Web3, deployment: DevDeployment, settings: Settings) -> Demo:
        self._say("seeding the demo...")
        self._retire_database(settings)
        demo = seed(
            w3,
            contract_at(w3, LEDGER, deployment.ledger),
            contract_at(w3, STABLECOIN, deployment.token),
            contract_at(w3, ACCESS_MANAGER, deployment.access_manager),
        )
        self._say(
            f"seeded {len(demo.models)} models with one twin each, {len(demo.brands)} brands "
            f"and {sum(len(m.licenses) for m in demo.models)} accepted licenses, one offer "
            f"waiting for {demo.pending_offer.license.brand} and one role grant waiting its "
            f"delay ({demo.tx_count} transactions)"
        )
        return demo

    def _record(
        self, deployment: DevDeployment, settings: Settings, demo: Demo | None
    ) -> dict[str, Any]:
        """Registers the demo's brands after a seed (else reads the saved ones), writes
        ``dev.json`` (not ready yet) and marks the seed complete; returns ``dev.json``'s details."""
        options = self.options
        brands = saved_brands(options) if demo is None else register_brands(settings, demo, options)
        info = dev_details(options, deployment, brands, demo)
        write_json(options.dev_json, {**info, "ready": False})
        if demo is not None:  # the demo is complete only once its brands' keys are saved
            mark_seeded(options, deployment.ledger)
        return info

    def _start_services(self, deployment: DevDeployment) -> None:
        """The API, the worker and the indexer; returns once the API is ready."""
        options = self.options
        env = self._child_env(deployment)
        python = [sys.executable, "-m", "bridge"]
        serve = [*python, "serve", "--host", options.host, "--port", str(options.api_port)]
        api = spawn("api", serve, options.log_dir, env)
        self.children.append(api)
        for service in SERVICES:
            self.children.append(spawn(service, [*python, service], options.log_dir, env))
        wait_until(
            api,
            lambda: httpx.get(f"{options.api_url}/readyz", timeout=2).status_code == 200,
            "ready at /readyz",
        )

    def _watch(self, stop: threading.Event) -> None:
        """Waits for ``stop``; a child that dies first ends the stack with its log's tail."""
        while not stop.wait(0.5):
            for child in self.children:
                code = child.proc.poll()
                if code is not None:
                    raise DevError(f"{child.name} stopped with exit code {code}:\n{child.tail()}")

    # -- run

    def run(self, stop: threading.Event) -> None:
        """Starts everything, prints how to use it, and waits for ``stop`` or a child's death.

        Raises:
            AlreadyRunningError: the data directory is in use.
            DevError: a part did not start or died (the message has its log's tail).
        """
        options = self.options
        with data_dir_lock(options):
            settings = Settings(data_dir=options.data_dir)
            try:
                self._run_locked(settings, stop)
            finally:
                self._stop_all()

    def _run_locked(self, settings: Settings, stop: threading.Event) -> None:
        self._start_anvil()
        w3 = Web3(Web3.HTTPProvider(self.options.rpc_url, request_kwargs={"timeout": 60}))
        deployment = ensure_deployment(w3, self.options, self.console)
        if deployment.fresh:
            demo: Demo | None = self._seed(w3, deployment, settings)
        else:
            demo = None
            self._say(f"TwinLedger at {deployment.ledger} matches the compiled code: reusing it")
        info = self._record(deployment, settings, demo)
        self._start_services(deployment)
        write_json(self.options.dev_json, {**info, "ready": True})
        self._print_ready(info)
        self._watch(stop)

    def _stop_all(self) -> None:
        # The API first (no new usages), then the worker (hands back its batch), then the chain.
        for child in sorted(self.children, key=lambda c: c.name == "anvil"):
            child.stop()
        self.children.clear()

    def _print_ready(self, info: Mapping[str, Any]) -> None:
        options = self.options
        for line, bold in ready_lines(info, str(options.dev_json), str(options.log_dir)):
            self._say(line, style="bold" if bold else None)
