"""Deployment to a named network (the access manager, the ledger, their roles and delays), its
manifest, ``verify_manifest`` and ``doctor``, against a real anvil (chain 31337, automine). Every
test deploys from a fresh deployer key, so nonces and addresses never depend on another test."""

from __future__ import annotations

import io
import json
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from pydantic import SecretStr
from rich.console import Console
from typer.testing import CliRunner
from web3 import Web3
from web3.types import RPCEndpoint
from web3.utils.address import get_create_address

from bridge.chain.ledger import LedgerConfig
from bridge.chain.toolchain import REPO_ROOT
from bridge.cli.app import app
from bridge.deploy.deployer import CALL_GAS_GUESS, LEDGER_GAS_GUESS, deploy
from bridge.deploy.doctor import Check, run_doctor, settle_gas
from bridge.deploy.errors import DeploymentError
from bridge.deploy.manifest import apply_deployment, load_manifest, verify_manifest
from bridge.deploy.networks import KeySource, NetworkConfig, RolesConfig, load_networks
from bridge.deploy.sending import GAS_MARGIN
from bridge.errors import SigningKeyError
from bridge.settings import Settings
from bridge.testing import local_anvil

pytestmark = pytest.mark.integration

ARTIFACTS = REPO_ROOT / "build" / "artifacts"
DEAD_URL = "http://127.0.0.1:9"  # nothing listens on the discard port
PASSWORD = "correct horse battery staple"  # noqa: S105 - guards test keys only
FEE_CAP = 10 * 10**9
ROLE_DELAY = 3600
NOTICE_PERIOD = 40 * 24 * 3600
MIN_SETBACK = 5 * 24 * 3600
"""OpenZeppelin AccessManager's minSetback: a new grant delay takes effect after it."""
ADMIN_ROLE, REGISTRAR, ATTESTER, PAUSER = 0, 1, 2, 3
MOCK_USD = 10**6


def rpc(w3: Web3, method: str, *params: Any) -> Any:
    response = w3.provider.make_request(RPCEndpoint(method), list(params))
    assert "error" not in response, response
    return response["result"]


@pytest.fixture(scope="module")
def w3() -> Iterator[Web3]:
    with local_anvil() as chain:
        yield chain


@pytest.fixture
def url(w3: Web3) -> str:
    return str(w3.provider.endpoint_uri)  # type: ignore[attr-defined]


def funded(w3: Web3, ether: int = 100) -> LocalAccount:
    account: LocalAccount = Account.create()
    rpc(w3, "anvil_setBalance", account.address, hex(ether * 10**18))
    return account


def keystore(tmp_path: Path, account: LocalAccount, name: str) -> Path:
    path = tmp_path / f"{name}.json"
    # pbkdf2 with few iterations: the format is the same, the test does not wait for scrypt
    path.write_text(
        json.dumps(Account.encrypt(account.key, PASSWORD, kdf="pbkdf2", iterations=2)),
        encoding="utf-8",
    )
    return path


def network(url: str, **overrides: Any) -> NetworkConfig:
    fields: dict[str, Any] = {
        "name": "testnet",
        "chain_id": 31337,
        "rpc_urls": (url,),
        "confirmations": 1,
        "max_fee_per_gas_wei": FEE_CAP,
        "role_delay": ROLE_DELAY,
        "notice_period": NOTICE_PERIOD,
        "block_time_s": 1,
        "receipt_timeout_s": 60,
    }
    fields.update(overrides)
    return NetworkConfig(**fields)


def quiet() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=250, highlight=False), out


def nonce(w3: Web3, account: LocalAccount) -> int:
    return int(w3.eth.get_transaction_count(account.address, "pending"))


def send(w3: Web3, account: LocalAccount, to: str, data: str) -> None:
    receipt = try_send(w3, account, to, data)
    assert receipt["status"] == 1


def try_send(w3: Web3, account: LocalAccount, to: str, data: str) -> Any:
    """The receipt of a transaction sent with a fixed gas limit (so a revert is mined)."""
    tx = {
        "type": 2,
        "chainId": 31337,
        "nonce": nonce(w3, account),
        "to": to,
        "data": data,
        "gas": 200_000,
        "maxFeePerGas": FEE_CAP,
        "maxPriorityFeePerGas": 10**9,
        "value": 0,
    }
    signed = account.sign_transaction(tx)
    return w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(signed.raw_transaction))


def advance(w3: Web3, seconds: int) -> None:
    rpc(w3, "evm_increaseTime", seconds)
    rpc(w3, "evm_mine")


def as_admin(w3: Web3, admin: LocalAccount, manager: Any, data: str) -> None:
    """An admin action under the admin's execution delay: schedule, wait ROLE_DELAY, execute."""
    send(w3, admin, manager.address, manager.encode_abi("schedule", [manager.address, data, 0]))
    advance(w3, ROLE_DELAY)
    send(w3, admin, manager.address, manager.encode_abi("execute", [manager.address, data]))


def artifact_json(name: str, artifacts: Path = ARTIFACTS) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((artifacts / f"{name}.json").read_text(encoding="utf-8"))
    return data


def abi_hash(name: str, artifacts: Path = ARTIFACTS) -> str:
    abi = artifact_json(name, artifacts)["abi"]
    return "0x" + keccak(text=json.dumps(abi, sort_keys=True, separators=(",", ":"))).hex()


def bytecode_hash(name: str) -> str:
    return "0x" + keccak(text=artifact_json(name)["bytecode"].lower()).hex()


@dataclass
class Deployed:
    w3: Web3
    url: str
    deployer: LocalAccount
    network: NetworkConfig
    manifest_path: Path
    output: str

    @property
    def ledger(self) -> Any:
        manifest = load_manifest(self.manifest_path)
        return self.w3.eth.contract(
            address=manifest.ledger_address, abi=artifact_json("TwinLedger")["abi"]
        )

    @property
    def manager(self) -> Any:
        manifest = load_manifest(self.manifest_path)
        return self.w3.eth.contract(
            address=manifest.access_manager_address, abi=artifact_json("TwinAccessManager")["abi"]
        )


def deploy_fresh(w3: Web3, url: str, tmp_path: Path, **overrides: Any) -> Deployed:
    deployer = funded(w3)
    config = network(url, **overrides)
    console, out = quiet()
    manifest_path = tmp_path / "deployments" / "testnet.json"
    outcome = deploy(w3, config, deployer, manifest_path=manifest_path, console=console)
    assert outcome.action == "deployed"
    return Deployed(w3, url, deployer, config, manifest_path, out.getvalue())


# ---------------------------------------------------------------- networks file


def test_load_networks_expands_environment_references(tmp_path: Path) -> None:
    path = tmp_path / "networks.toml"
    path.write_text(
        """
[networks.chain]
chain_id = 84532
rpc_urls = ["${MAIN_URL}", "${SPARE_URL}", "${FALLBACK:-http://fallback:8545}"]
max_fee_per_gas_wei = 5_000_000_000
roles = { admin = "${ADMIN}", attester = ["${ATTESTER}"] }
deployer = { keystore = "${KEYSTORE}", password_env = "DEPLOYER_PASSWORD" }
""",
        encoding="utf-8",
    )
    full = load_networks(path, environ={"MAIN_URL": "http://main", "ADMIN": "0xA", "KEYSTORE": "k"})
    chain = full["chain"]
    assert chain.rpc_urls == ("http://main", "http://fallback:8545")
    assert chain.missing_env == ("ATTESTER",)
    assert chain.roles == RolesConfig(admin="0xA", attester=("${ATTESTER}",))
    assert chain.deployer == KeySource(keystore=Path("k"), password_env="DEPLOYER_PASSWORD")  # noqa: S106
    assert (chain.confirmations, chain.token, chain.role_delay) == (1, "mock", 0)
    assert chain.ledger_config(6) == LedgerConfig(
        notice_period=3_110_400,
        spending_period=86_400,
        raise_delay=86_400,
        default_per_usage=50_000 * MOCK_USD,
        default_per_period=250_000 * MOCK_USD,
    )
    with pytest.raises(
        DeploymentError, match=r"^network chain needs the environment variable ATTESTER$"
    ):
        chain.require_env()


def test_the_repository_networks_file_defines_local_rehearsal_and_sepolia() -> None:
    networks = load_networks(environ={})
    assert sorted(networks) == ["local", "rehearsal", "sepolia"]
    local, rehearsal, sepolia = networks["local"], networks["rehearsal"], networks["sepolia"]
    assert (local.chain_id, local.rpc_urls, local.confirmations, local.missing_env) == (
        31337,
        ("http://127.0.0.1:8545",),
        1,
        (),
    )
    assert local.load_deployer(environ={}).address == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
    assert (rehearsal.chain_id, rehearsal.rpc_urls, rehearsal.confirmations) == (
        11155111,
        ("http://127.0.0.1:8546",),
        3,
    )
    assert rehearsal.block_time_s == 12
    assert rehearsal.missing_env == (
        "TWIN_BRIDGE_REHEARSAL_ADMIN",
        "TWIN_BRIDGE_REHEARSAL_ATTESTER",
        "TWIN_BRIDGE_DEPLOYER_KEYSTORE",
        "TWIN_BRIDGE_DEPLOYER_PASSWORD_FILE",
    )
    assert (sepolia.chain_id, sepolia.rpc_urls, sepolia.confirmations) == (11155111, (), 3)
    assert sepolia.max_fee_per_gas_wei == 50 * 10**9
    assert sepolia.missing_env == (
        "TWIN_BRIDGE_SEPOLIA_RPC_URL",
        "TWIN_BRIDGE_SEPOLIA_ATTESTER",
        "TWIN_BRIDGE_DEPLOYER_KEYSTORE",
    )
    settings = {
        name: (n.role_delay, n.ledger_config(6))
        for name, n in {"local": local, "rehearsal": rehearsal, "sepolia": sepolia}.items()
    }
    assert settings == {
        "local": (300, LedgerConfig(3_110_400, 86_400, 60, 50_000 * MOCK_USD, 250_000 * MOCK_USD)),
        "rehearsal": (
            172_800,
            LedgerConfig(3_110_400, 86_400, 86_400, 50_000 * MOCK_USD, 250_000 * MOCK_USD, 0),
        ),
        "sepolia": (
            172_800,
            LedgerConfig(3_110_400, 86_400, 86_400, 50_000 * MOCK_USD, 250_000 * MOCK_USD, 0),
        ),
    }
    env = {
        "TWIN_BRIDGE_SEPOLIA_RPC_URL_2": "https://second.example",
        "TWIN_BRIDGE_SEPOLIA_ATTESTER": "0x" + "11" * 20,
        "TWIN_BRIDGE_DEPLOYER_KEYSTORE": "keys/deployer.json",
    }
    sepolia = load_networks(environ=env)["sepolia"]
    assert (sepolia.rpc_urls, sepolia.missing_env) == (("https://second.example",), ())


@pytest.mark.parametrize(
    ("line", "error"),
    [
        (
            "notice_period = 3_110_399",
            "notice_period\n  Input should be greater than or equal to 3110400",
        ),
        (
            "default_per_usage = 250_001",
            "default_per_usage 250001 is above default_per_period 250000",
        ),
        ("spending_period = 0", "spending_period\n  Input should be greater than 0"),
        ("admin_delay = 60", "admin_delay\n  Extra inputs are not permitted"),
    ],
)
def test_a_network_with_unsafe_ledger_settings_is_refused(
    tmp_path: Path, line: str, error: str
) -> None:
    path = tmp_path / "networks.toml"
    path.write_text(
        f"[networks.chain]\nchain_id = 1\nmax_fee_per_gas_wei = 1\n{line}\n", encoding="utf-8"
    )
    with pytest.raises(DeploymentError) as refused:
        load_networks(path, environ={})
    assert str(refused.value).startswith(f"{path}: network chain is malformed:\n")
    assert error in str(refused.value)


def test_a_raw_deployer_key_is_refused_outside_dev_chains() -> None:
    source = KeySource(private_key="0x" + "42" * 32)  # type: ignore[arg-type]
    assert (
        source.load("deployer", chain_id=31337).address
        == Account.from_key("0x" + "42" * 32).address
    )
    with pytest.raises(SigningKeyError, match="a raw private key is refused on chain 11155111"):
        source.load("deployer", chain_id=11155111)


# ---------------------------------------------------------------- deploy


def test_deploy_writes_the_exact_manifest(w3: Web3, url: str, tmp_path: Path) -> None:
    admin, registrar, attester_a, attester_b = (Account.create() for _ in range(4))
    start_block = w3.eth.block_number
    before = datetime.now(UTC).replace(microsecond=0)
    done = deploy_fresh(
        w3,
        url,
        tmp_path,
        roles=RolesConfig(
            admin=admin.address,
            registrar=(registrar.address,),
            attester=(attester_a.address, attester_b.address),
            pauser=("deployer",),
        ),
    )
    deployer = done.deployer.address
    sent = [
        tx
        for number in range(start_block + 1, w3.eth.block_number + 1)
        for tx in w3.eth.get_block(number, full_transactions=True)["transactions"]
        if tx["from"] == deployer  # type: ignore[index]
    ]
    # 9 creations; 2 function mappings, 4 grants, 3 grant delays, the admin's grant, renouncing
    assert [tx["nonce"] for tx in sent] == list(range(20))  # type: ignore[index]
    receipts = [w3.eth.get_transaction_receipt(tx["hash"]) for tx in sent]  # type: ignore[index]
    names = [
        "MockStablecoin", "TwinAccessManager", "EscrowBook", "LicenseBook", "PayeeBook",
        "SpendingBook", "TwinBook", "TwinLedgerExtension", "TwinLedger",
    ]  # fmt: skip
    addresses = {name: get_create_address(deployer, i) for i, name in enumerate(names)}  # type: ignore[arg-type]
    assert [r["contractAddress"] for r in receipts[:9]] == list(addresses.values())
    assert receipts[8]["gasUsed"] * GAS_MARGIN <= LEDGER_GAS_GUESS  # the dry run's guess suffices
    manager = done.manager
    for receipt, tx in zip(receipts[9:], sent[9:], strict=True):
        assert receipt["to"] == addresses["TwinAccessManager"]
        function, _ = manager.decode_function_input(tx["input"])  # type: ignore[index]
        assert receipt["gasUsed"] <= CALL_GAS_GUESS[function.fn_name]  # the dry run's guesses
    config = {
        "notice_period": NOTICE_PERIOD,
        "spending_period": 86_400,
        "raise_delay": 86_400,
        "default_per_usage": 50_000 * MOCK_USD,
        "default_per_period": 250_000 * MOCK_USD,
        "hold_window": 0,
    }
    shared = {
        "token": addresses["MockStablecoin"],
        "authority": addresses["TwinAccessManager"],
        "settings": config,
    }
    constructor_args = {
        "TwinAccessManager": {"initialAdmin": deployer},
        "TwinLedgerExtension": shared,
        "TwinLedger": {**shared, "extension": addresses["TwinLedgerExtension"]},
    }

    data = json.loads(done.manifest_path.read_text(encoding="utf-8"))
    created_at = datetime.fromisoformat(data.pop("created_at").replace("Z", "+00:00"))
    assert before <= created_at <= datetime.now(UTC)
    libraries = ("EscrowBook", "LicenseBook", "PayeeBook", "SpendingBook", "TwinBook")
    assert data == {
        "format": "twin-bridge-deployment-2",
        "network": "testnet",
        "chain_id": 31337,
        "contracts": {
            name: {
                "address": addresses[name],
                "tx_hash": receipt["transactionHash"].to_0x_hex(),
                "block_number": receipt["blockNumber"],
                "abi_hash": abi_hash(name),
                "bytecode_hash": bytecode_hash(name),
                "runtime_code_hash": "0x" + keccak(w3.eth.get_code(addresses[name])).hex(),
                "constructor_args": constructor_args.get(name, {}),
            }
            for name, receipt in zip(names, receipts, strict=False)
        },
        "libraries": {name: addresses[name] for name in libraries},
        "payment_token": addresses["MockStablecoin"],
        "compiler": {
            "version": artifact_json("TwinLedger")["compilerVersion"],
            "settings": {
                "optimizer": {"enabled": True, "runs": 200},
                "evmVersion": "cancun",
                "viaIR": True,
            },
        },
        "deployer": deployer,
        "ledger_config": config,
        "role_delay": ROLE_DELAY,
        "roles": {
            "ADMIN_ROLE": [admin.address],
            "REGISTRAR_ROLE": [registrar.address],
            "ATTESTER_ROLE": [attester_a.address, attester_b.address],
            "PAUSER_ROLE": [deployer],
        },
    }
    manifest = load_manifest(done.manifest_path)
    assert (manifest.ledger_address, manifest.token_address, manifest.access_manager_address) == (
        addresses["TwinLedger"],
        addresses["MockStablecoin"],
        addresses["TwinAccessManager"],
    )
    ledger = done.ledger.functions
    assert ledger.authority().call() == addresses["TwinAccessManager"]
    assert LedgerConfig(*ledger.config().call()) == manifest.config == LedgerConfig(**config)
    assert f"deployed TwinLedger at {addresses['TwinLedger']} on testnet" in done.output
    assert (
        f"every admin action now waits {ROLE_DELAY:,} s (schedule, then execute); the "
        f"{ROLE_DELAY:,} s grant delay of the registrar, attester and pauser roles takes effect "
        f"{MIN_SETBACK:,} s after this deployment"
    ) in done.output
    verify_manifest(w3, manifest)


def test_running_deploy_again_with_unchanged_code_does_nothing(
    w3: Web3, url: str, tmp_path: Path
) -> None:
    done = deploy_fresh(w3, url, tmp_path)
    written = done.manifest_path.read_bytes()
    sent = nonce(w3, done.deployer)
    console, out = quiet()
    outcome = deploy(
        w3, done.network, done.deployer, manifest_path=done.manifest_path, console=console
    )
    assert outcome.action == "unchanged"
    assert outcome.manifest == load_manifest(done.manifest_path)
    assert nonce(w3, done.deployer) == sent
    assert done.manifest_path.read_bytes() == written
    assert "testnet: unchanged" in out.getvalue()


def test_deploy_waits_for_the_confirmations(w3: Web3, url: str, tmp_path: Path) -> None:
    stop = threading.Event()

    def mine() -> None:  # another block every 0.2 s, as a chain with a block time would
        while not stop.wait(0.2):
            rpc(w3, "evm_mine")

    miner = threading.Thread(target=mine, daemon=True)
    miner.start()
    try:
        done = deploy_fresh(w3, url, tmp_path, confirmations=4)
        head = w3.eth.block_number
    finally:
        stop.set()
        miner.join()
    last_block = max(
        number
        for number in range(head + 1)
        for tx in w3.eth.get_block(number, full_transactions=True)["transactions"]
        if tx["from"] == done.deployer.address  # type: ignore[index]
    )
    assert f"4 confirmation(s) at block {last_block + 3}" in done.output
    assert head >= last_block + 3


def test_changed_artifacts_are_refused_unless_forced(w3: Web3, url: str, tmp_path: Path) -> None:
    done = deploy_fresh(w3, url, tmp_path)
    old = load_manifest(done.manifest_path)
    changed = tmp_path / "artifacts"
    shutil.copytree(ARTIFACTS, changed)
    ledger = artifact_json("TwinLedger", changed)
    ledger["abi"].append({"type": "event", "name": "Changed", "inputs": [], "anonymous": False})
    (changed / "TwinLedger.json").write_text(json.dumps(ledger), encoding="utf-8")
    sent = nonce(w3, done.deployer)

    with pytest.raises(DeploymentError) as refused:
        deploy(
            w3,
            done.network,
            done.deployer,
            manifest_path=done.manifest_path,
            console=quiet()[0],
            artifacts_dir=changed,
        )
    assert str(refused.value) == (
        f"{done.manifest_path} records a deployment that differs from this one: the compiled "
        f"TwinLedger differs from the one deployed at {old.ledger_address} on "
        f"{old.created_at:%Y-%m-%d %H:%M} UTC (the contracts changed since): redeploy, or build "
        "the deployed sources. Deploy anew with --force (the old contracts stay where they are)"
    )
    assert nonce(w3, done.deployer) == sent
    assert load_manifest(done.manifest_path) == old

    forced = deploy(
        w3,
        done.network,
        done.deployer,
        manifest_path=done.manifest_path,
        force=True,
        console=quiet()[0],
        artifacts_dir=changed,
    )
    assert forced.action == "deployed"
    assert forced.manifest is not None
    assert forced.manifest.ledger_address == get_create_address(done.deployer.address, sent + 8)  # type: ignore[arg-type]
    assert forced.manifest.contracts["TwinLedger"].abi_hash == abi_hash("TwinLedger", changed)
    assert load_manifest(done.manifest_path) == forced.manifest


def test_a_changed_role_configuration_is_refused_unless_forced(
    w3: Web3, url: str, tmp_path: Path
) -> None:
    done = deploy_fresh(w3, url, tmp_path)
    other = Account.create().address
    changed = network(url, roles=RolesConfig(attester=(other,)))
    with pytest.raises(DeploymentError, match=rf"ATTESTER_ROLE \[\] -> \['{other}'\]"):
        deploy(w3, changed, done.deployer, manifest_path=done.manifest_path, console=quiet()[0])


def test_the_wrong_chain_id_is_refused_before_anything_is_sent(
    w3: Web3, url: str, tmp_path: Path
) -> None:
    deployer = funded(w3)
    with pytest.raises(DeploymentError) as refused:
        deploy(
            w3,
            network(url, chain_id=1337),
            deployer,
            manifest_path=tmp_path / "m.json",
            console=quiet()[0],
        )
    assert str(refused.value) == (
        f"the RPC {url} is chain 31337, but network testnet is chain 1337: wrong RPC URL or "
        "wrong --network"
    )
    assert nonce(w3, deployer) == 0
    assert not (tmp_path / "m.json").exists()


def test_fees_above_the_cap_are_refused(w3: Web3, url: str, tmp_path: Path) -> None:
    deployer = funded(w3)
    base_fee = int(w3.eth.get_block("latest")["baseFeePerGas"])  # type: ignore[typeddict-item]
    with pytest.raises(DeploymentError) as refused:
        deploy(
            w3,
            network(url, max_fee_per_gas_wei=base_fee - 1),
            deployer,
            manifest_path=tmp_path / "m.json",
            console=quiet()[0],
        )
    assert str(refused.value) == (
        f"the base fee on testnet is {base_fee:,} wei, above the network's fee cap of "
        f"{base_fee - 1:,} wei (max_fee_per_gas_wei): wait for cheaper blocks or raise the cap"
    )
    assert nonce(w3, deployer) == 0


def test_dry_run_sends_nothing_and_prints_gas_and_cost(w3: Web3, url: str, tmp_path: Path) -> None:
    deployer = funded(w3)
    attester = Account.create().address
    config = network(url, roles=RolesConfig(admin=attester, attester=(attester,)))
    console, out = quiet()
    block = w3.eth.block_number
    outcome = deploy(
        w3, config, deployer, manifest_path=tmp_path / "m.json", dry_run=True, console=console
    )
    assert (outcome.action, outcome.manifest) == ("dry-run", None)
    assert nonce(w3, deployer) == 0
    assert w3.eth.block_number == block
    assert not (tmp_path / "m.json").exists()
    me = deployer.address
    assert [(s.description, s.gas_estimated) for s in outcome.steps] == [
        ("deploy MockStablecoin", True),
        ("deploy TwinAccessManager", True),
        ("deploy EscrowBook", True),
        ("deploy LicenseBook", True),
        ("deploy PayeeBook", True),
        ("deploy SpendingBook", True),
        ("deploy TwinBook", True),
        ("deploy TwinLedgerExtension", True),
        ("deploy TwinLedger", False),  # its constructor asks the extension, not yet there
        ("map REGISTRAR_ROLE to mint", False),
        ("map PAUSER_ROLE to pause/unpause", False),
        (f"grant REGISTRAR_ROLE to {me}", False),
        (f"grant ATTESTER_ROLE to {attester}", False),
        (f"grant PAUSER_ROLE to {me}", False),
        ("set the grant delay of REGISTRAR_ROLE to 3600 s", False),
        ("set the grant delay of ATTESTER_ROLE to 3600 s", False),
        ("set the grant delay of PAUSER_ROLE to 3600 s", False),
        (f"grant ADMIN_ROLE to {attester} with a 3600 s execution delay", False),
        (f"the deployer {me} renounces ADMIN_ROLE", False),
    ]
    latest = w3.eth.get_block("latest")
    price = min(FEE_CAP, latest["baseFeePerGas"] + int(w3.eth.max_priority_fee))  # type: ignore[typeddict-item]
    assert 2_000_000 < outcome.steps[7].gas < 7_000_000  # the extension, estimated
    assert outcome.steps[8].gas == LEDGER_GAS_GUESS
    assert [s.gas for s in outcome.steps[9:]] == [80_000] * 2 + [60_000] * 7 + [30_000]
    assert [s.cost_wei for s in outcome.steps] == [s.gas * price for s in outcome.steps]
    text = out.getvalue()
    assert f"{LEDGER_GAS_GUESS:,} (guess)" in text
    assert "60,000 (guess)" in text
    assert "dry run: nothing was sent and no manifest was written" in text


# ---------------------------------------------------------------- roles


def test_roles_and_delays_are_exactly_as_configured(w3: Web3, url: str, tmp_path: Path) -> None:
    admin, registrar, attester, pauser = (funded(w3) for _ in range(4))
    done = deploy_fresh(
        w3,
        url,
        tmp_path,
        roles=RolesConfig(
            admin=admin.address,
            registrar=(registrar.address,),
            attester=(attester.address,),
            pauser=(pauser.address,),
        ),
    )
    manager, ledger = done.manager, done.ledger
    deployer = done.deployer.address
    granted = [
        (e["args"]["roleId"], e["args"]["account"], e["args"]["delay"], e["args"]["newMember"])
        for e in manager.events.RoleGranted().get_logs(from_block=0)
        if e["address"] == manager.address
    ]
    assert granted == [
        (ADMIN_ROLE, deployer, 0, True),  # the constructor's
        (REGISTRAR, registrar.address, 0, True),
        (ATTESTER, attester.address, 0, True),
        (PAUSER, pauser.address, 0, True),
        (ADMIN_ROLE, admin.address, ROLE_DELAY, True),
    ]
    [revoked] = manager.events.RoleRevoked().get_logs(from_block=0)
    assert (revoked["args"]["roleId"], revoked["args"]["account"]) == (ADMIN_ROLE, deployer)
    mapped = {
        (bytes(e["args"]["selector"]), e["args"]["roleId"])
        for e in manager.events.TargetFunctionRoleUpdated().get_logs(from_block=0)
        if e["args"]["target"] == ledger.address
    }
    selectors = {
        name: keccak(text=name)[:4]
        for name in ("mint(address,string,bytes32)", "pause()", "unpause()")
    }
    assert mapped == {
        (selectors["mint(address,string,bytes32)"], REGISTRAR),
        (selectors["pause()"], PAUSER),
        (selectors["unpause()"], PAUSER),
    }
    fn = manager.functions
    assert fn.hasRole(ADMIN_ROLE, admin.address).call() == [True, ROLE_DELAY]
    for role, holder in ((REGISTRAR, registrar), (ATTESTER, attester), (PAUSER, pauser)):
        assert fn.hasRole(role, holder.address).call() == [True, 0]
    for role in (ADMIN_ROLE, REGISTRAR, ATTESTER, PAUSER):
        assert fn.hasRole(role, deployer).call() == [False, 0]
    changed = [
        (
            e["args"]["roleId"],
            e["args"]["delay"],
            e["args"]["since"] - w3.eth.get_block(e["blockNumber"])["timestamp"],
        )
        for e in manager.events.RoleGrantDelayChanged().get_logs(from_block=0)
    ]
    assert changed == [(role, ROLE_DELAY, MIN_SETBACK) for role in (REGISTRAR, ATTESTER, PAUSER)]

    # Only the registrar mints; the deployer cannot even though it deployed the ledger.
    refused = try_send(
        w3, done.deployer, ledger.address, ledger.encode_abi("mint", [deployer, "u", bytes(32)])
    )
    assert refused["status"] == 0
    send(
        w3,
        registrar,
        ledger.address,
        ledger.encode_abi("mint", [registrar.address, "u", bytes(32)]),
    )

    # The admin cannot grant at once: every admin action is scheduled and waits ROLE_DELAY.
    newcomer = Account.create().address
    grant = manager.encode_abi("grantRole", [ATTESTER, newcomer, 0])
    assert try_send(w3, admin, manager.address, grant)["status"] == 0
    as_admin(w3, admin, manager, grant)
    assert fn.hasRole(ATTESTER, newcomer).call() == [True, 0]  # before minSetback: at once

    # Once the grant delay is in force, a new attester also waits ROLE_DELAY after its grant.
    advance(w3, MIN_SETBACK)
    assert fn.getRoleGrantDelay(ATTESTER).call() == ROLE_DELAY
    later = Account.create().address
    as_admin(w3, admin, manager, manager.encode_abi("grantRole", [ATTESTER, later, 0]))
    assert fn.hasRole(ATTESTER, later).call() == [False, 0]
    advance(w3, ROLE_DELAY)
    assert fn.hasRole(ATTESTER, later).call() == [True, 0]
    outcome = deploy(
        w3, done.network, done.deployer, manifest_path=done.manifest_path, console=quiet()[0]
    )
    assert outcome.action == "unchanged"


# ---------------------------------------------------------------- verify_manifest


def test_verify_manifest_names_another_chain(w3: Web3, url: str, tmp_path: Path) -> None:
    done = deploy_fresh(w3, url, tmp_path)
    elsewhere = load_manifest(done.manifest_path).model_copy(update={"chain_id": 5})
    with pytest.raises(DeploymentError) as wrong:
        verify_manifest(w3, elsewhere)
    assert str(wrong.value) == (
        f"deployment testnet does not match the chain: the RPC {url} is chain 31337, but the "
        "manifest of network testnet is for chain 5"
    )


def test_verify_manifest_detects_replaced_code(w3: Web3, url: str, tmp_path: Path) -> None:
    done = deploy_fresh(w3, url, tmp_path)
    manifest = load_manifest(done.manifest_path)
    ledger = manifest.ledger_address
    original = bytes(w3.eth.get_code(ledger))
    token_code = w3.eth.get_code(manifest.token_address)
    rpc(w3, "anvil_setCode", ledger, token_code.to_0x_hex())
    with pytest.raises(DeploymentError) as replaced:
        verify_manifest(w3, manifest)
    assert str(replaced.value) == (
        f"deployment testnet does not match the chain: the code at {ledger} (TwinLedger) is not "
        f"the code deployed there (hash 0x{keccak(token_code).hex()}, manifest "
        f"{manifest.contracts['TwinLedger'].runtime_code_hash})"
    )

    # Same length, one byte changed, and a manifest edited to match: the build still tells.
    tampered = bytearray(original)
    index = next(i for i in range(100, len(tampered)) if tampered[i] not in (0, 0xFF))
    tampered[index] = 0xFF
    rpc(w3, "anvil_setCode", ledger, "0x" + tampered.hex())
    record = manifest.contracts["TwinLedger"].model_copy(
        update={"runtime_code_hash": "0x" + keccak(bytes(tampered)).hex()}
    )
    edited = manifest.model_copy(update={"contracts": {**manifest.contracts, "TwinLedger": record}})
    with pytest.raises(
        DeploymentError,
        match=rf"the code at {ledger} \(TwinLedger\) is not the compiled TwinLedger$",
    ):
        verify_manifest(w3, edited)

    rpc(w3, "anvil_setCode", ledger, "0x")
    with pytest.raises(
        DeploymentError, match=rf"no contract at {ledger} \(TwinLedger\) on chain 31337"
    ):
        verify_manifest(w3, manifest)


def test_serve_and_worker_settings_take_the_ledger_from_a_verified_manifest(
    w3: Web3, url: str, tmp_path: Path
) -> None:
    done = deploy_fresh(w3, url, tmp_path)
    ledger = load_manifest(done.manifest_path).ledger_address
    settings = Settings(data_dir=tmp_path, rpc_url=url, deployment=done.manifest_path)
    assert apply_deployment(settings).ledger_address == ledger
    assert apply_deployment(settings.model_copy(update={"ledger_address": ledger.lower()}))
    other = "0x" + "22" * 20
    with pytest.raises(
        DeploymentError, match=f"TWIN_BRIDGE_LEDGER_ADDRESS {other} is not the ledger"
    ):
        apply_deployment(settings.model_copy(update={"ledger_address": other}))
    plain = Settings(data_dir=tmp_path, rpc_url=url, ledger_address=other)
    assert apply_deployment(plain) is plain
    rpc(w3, "anvil_setCode", ledger, "0x")
    with pytest.raises(DeploymentError, match="no contract at"):
        apply_deployment(settings)


# ---------------------------------------------------------------- doctor


@dataclass
class Setup:
    deployed: Deployed
    attester: LocalAccount
    relayer: LocalAccount
    settings: Settings
    environ: dict[str, str]


@pytest.fixture
def setup(w3: Web3, url: str, tmp_path: Path) -> Setup:
    attester, relayer = Account.create(), funded(w3, 1)
    deployer = funded(w3)
    deployer_keystore = keystore(tmp_path, deployer, "deployer")
    config = network(
        url,
        roles=RolesConfig(attester=(attester.address,)),
        deployer=KeySource(keystore=deployer_keystore, password_env="DEPLOYER_PASSWORD"),  # noqa: S106,
    )
    manifest_path = tmp_path / "deployments" / "testnet.json"
    deploy(w3, config, deployer, manifest_path=manifest_path, console=quiet()[0])
    settings = Settings(
        data_dir=tmp_path,
        attester_keystore=keystore(tmp_path, attester, "attester"),
        relayer_keystore=keystore(tmp_path, relayer, "relayer"),
        keystore_password=PASSWORD,  # type: ignore[arg-type]
    )
    deployed = Deployed(w3, url, deployer, config, manifest_path, "")
    return Setup(deployed, attester, relayer, settings, {"DEPLOYER_PASSWORD": PASSWORD})


def doctor(setup: Setup, **overrides: Any) -> list[Check]:
    config = setup.deployed.network.model_copy(update=overrides.pop("network", {}))
    return run_doctor(
        config,
        overrides.pop("settings", setup.settings),
        manifest_path=setup.deployed.manifest_path,
        environ=overrides.pop("environ", setup.environ),
        timeout=5,
    )


def verdicts(checks: list[Check]) -> list[tuple[str, bool | None]]:
    return [(check.name, check.ok) for check in checks]


def failures(checks: list[Check]) -> dict[str, str]:
    return {check.name: check.detail for check in checks if check.ok is False}


def test_doctor_passes_a_good_setup(setup: Setup) -> None:
    checks = doctor(setup)
    url = setup.deployed.url
    assert verdicts(checks) == [
        (f"rpc {url}", True),
        (f"chain id {url}", True),
        ("deployer key", True),
        ("attester key", True),
        ("relayer key", True),
        ("contracts", True),
        ("REGISTRAR_ROLE", True),
        ("ATTESTER_ROLE", True),
        ("PAUSER_ROLE", True),
        ("ADMIN_ROLE", True),
        ("grant delays", True),
        ("relayer balance", True),
    ]
    details = {check.name: check.detail for check in checks}
    assert details["attester key"] == (
        f"{setup.attester.address} from keystore {setup.settings.attester_keystore}"
    )
    assert details["ATTESTER_ROLE"] == f"held by {setup.attester.address}"
    deployer = setup.deployed.deployer.address
    assert details["ADMIN_ROLE"] == f"held by {deployer}; its actions wait 3,600 s"
    manager = setup.deployed.manager
    [*_, changed] = manager.events.RoleGrantDelayChanged().get_logs(from_block=0)
    effect = datetime.fromtimestamp(changed["args"]["since"], UTC)
    assert details["grant delays"] == (
        f"3,600 s on REGISTRAR_ROLE, ATTESTER_ROLE, PAUSER_ROLE from {effect:%Y-%m-%d %H:%M:%S} "
        "UTC (the access manager's minSetback); until then a new member counts at once"
    )
    assert details["relayer balance"] == (
        "1.000000 ETH, enough for 10 batches of 500 usages (1,600,000 gas each) at the fee cap "
        "of 10.000 gwei"
    )


def test_doctor_names_an_unreachable_rpc_and_a_wrong_chain_id(setup: Setup) -> None:
    url = setup.deployed.url
    checks = doctor(setup, network={"rpc_urls": (DEAD_URL, url)})
    assert failures(checks) == {
        f"rpc {DEAD_URL}": failures(checks)[f"rpc {DEAD_URL}"],
    }
    assert failures(checks)[f"rpc {DEAD_URL}"].startswith(f"cannot reach {DEAD_URL}: ")

    wrong = failures(doctor(setup, network={"chain_id": 1337}))
    assert wrong == {
        f"chain id {url}": f"{url} is chain 31337, but network testnet is chain 1337",
        "chain": "no RPC of network testnet answers with chain 1337: manifest, roles and "
        "balance not checked",
    }


def test_doctor_names_a_bad_keystore_password(setup: Setup) -> None:
    bad = setup.settings.model_copy(update={"keystore_password": SecretStr("wrong")})
    found = failures(doctor(setup, settings=bad, environ={"DEPLOYER_PASSWORD": "wrong"}))
    assert sorted(found) == ["attester key", "deployer key", "relayer key"]
    for role in ("attester", "relayer"):
        keystore_path = getattr(setup.settings, f"{role}_keystore")
        assert found[f"{role} key"].startswith(
            f"{role} key: cannot decrypt keystore {keystore_path}: "
        )
    assert found["deployer key"].startswith("deployer key: cannot decrypt keystore ")


def test_doctor_skips_the_deployer_key_without_its_password(setup: Setup) -> None:
    checks = doctor(setup, environ={})
    assert failures(checks) == {}
    skipped = [check for check in checks if check.ok is None]
    assert skipped == [
        Check(
            "deployer key",
            None,
            f"not checked: no password for keystore {setup.deployed.network.deployer.keystore} "
            "(password in $DEPLOYER_PASSWORD) (needed only to deploy)",
        )
    ]


def test_doctor_names_a_missing_deployer_keystore(setup: Setup, tmp_path: Path) -> None:
    gone = KeySource(keystore=tmp_path / "gone.json", password_env="DEPLOYER_PASSWORD")  # noqa: S106
    assert failures(doctor(setup, network={"deployer": gone})) == {
        "deployer key": f"no keystore file at {tmp_path / 'gone.json'}"
    }


def test_doctor_names_an_unfunded_relayer(setup: Setup) -> None:
    rpc(setup.deployed.w3, "anvil_setBalance", setup.relayer.address, hex(10**15))
    assert failures(doctor(setup)) == {
        "relayer balance": f"the relayer {setup.relayer.address} holds 0.001000 ETH but needs "
        f"{10 * settle_gas(500) * FEE_CAP / 10**18:.6f} ETH for 10 batches of 500 usages "
        "(1,600,000 gas each) at the fee cap of 10.000 gwei: fund it"
    }


def test_doctor_names_a_missing_role(setup: Setup, tmp_path: Path) -> None:
    stranger = Account.create()
    other = setup.settings.model_copy(
        update={"attester_keystore": keystore(tmp_path, stranger, "stranger")}
    )
    assert failures(doctor(setup, settings=other)) == {
        "ATTESTER_ROLE": f"the bridge's attester {stranger.address} lacks it: its batches "
        "would be refused"
    }
    manager, deployer = setup.deployed.manager, setup.deployed.deployer
    revoke = manager.encode_abi("revokeRole", [PAUSER, deployer.address])
    as_admin(setup.deployed.w3, deployer, manager, revoke)
    assert failures(doctor(setup)) == {"PAUSER_ROLE": f"{deployer.address} lacks it"}


def test_doctor_names_delays_other_than_the_networks(setup: Setup) -> None:
    deployer = setup.deployed.deployer.address
    assert failures(doctor(setup, network={"role_delay": 60})) == {
        "ADMIN_ROLE": f"held by {deployer} with an execution delay of 3,600 s, but the network's "
        "role_delay is 60 s",
        "grant delays": "REGISTRAR_ROLE 0 s, ATTESTER_ROLE 0 s, PAUSER_ROLE 0 s; the network's "
        "role_delay is 60 s",
    }
    advance(setup.deployed.w3, MIN_SETBACK)
    checks = {check.name: check for check in doctor(setup)}
    assert checks["grant delays"] == Check(
        "grant delays", True, "3,600 s on REGISTRAR_ROLE, ATTESTER_ROLE, PAUSER_ROLE"
    )


# ---------------------------------------------------------------- the CLI


def test_cli_deploy_then_doctor(
    w3: Web3, url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deployer = funded(w3)
    attester = Account.create()
    deployer_keystore = keystore(tmp_path, deployer, "deployer")
    networks = tmp_path / "networks.toml"
    networks.write_text(
        f"""
[networks.lab]
chain_id = 31337
rpc_urls = ["${{LAB_RPC_URL}}"]
max_fee_per_gas_wei = {FEE_CAP}
block_time_s = 1
roles = {{ attester = ["{attester.address}"] }}
deployer = {{ keystore = "{deployer_keystore}", password_env = "LAB_PASSWORD" }}
""",
        encoding="utf-8",
    )
    for name in ("TWIN_BRIDGE_RPC_URL", "TWIN_BRIDGE_LEDGER_ADDRESS", "TWIN_BRIDGE_DEPLOYMENT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LAB_RPC_URL", url)
    monkeypatch.setenv("LAB_PASSWORD", PASSWORD)
    monkeypatch.setenv("TWIN_BRIDGE_DATA_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("TWIN_BRIDGE_ATTESTER_PRIVATE_KEY", "0x" + attester.key.hex())
    manifest = tmp_path / "lab.json"
    args = ["--network", "lab", "--networks", str(networks), "--manifest", str(manifest)]
    runner = CliRunner()

    dry = runner.invoke(app, ["deploy", *args, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "deploy TwinLedger" in dry.output
    assert not manifest.exists()

    first = runner.invoke(app, ["deploy", *args])
    assert first.exit_code == 0, first.output
    assert first.stdout.strip() == load_manifest(manifest).ledger_address
    again = runner.invoke(app, ["deploy", *args])
    assert again.exit_code == 0, again.output
    assert "lab: unchanged" in again.output

    unfunded = runner.invoke(app, ["doctor", *args])
    assert unfunded.exit_code == 1, unfunded.output
    assert "✓ ATTESTER_ROLE: held by " + attester.address in unfunded.output
    assert "✗ relayer balance: the relayer " + attester.address in unfunded.output
    assert "✓ ADMIN_ROLE: held by " + deployer.address + "; its actions wait 0 s" in unfunded.output
    assert "1 of 12 checks failed" in unfunded.output

    rpc(w3, "anvil_setBalance", attester.address, hex(10**18))
    ready = runner.invoke(app, ["doctor", *args])
    assert ready.exit_code == 0, ready.output
    assert "network lab is ready" in ready.output

    missing = runner.invoke(app, ["deploy", "--network", "nowhere", "--networks", str(networks)])
    assert missing.exit_code == 2
    assert "no network 'nowhere'" in missing.output


def test_cli_keystore_new_writes_a_keystore_that_decrypts(tmp_path: Path) -> None:
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD + "\n", encoding="utf-8")
    out = tmp_path / "keys" / "attester.json"
    args = ["keystore", "new", "--out", str(out), "--password-file", str(password_file)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    address = result.stdout.strip()
    key = Account.decrypt(json.loads(out.read_text(encoding="utf-8")), PASSWORD)
    assert Account.from_key(key).address == address
    assert out.stat().st_mode & 0o777 == 0o600
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 2
    assert "refusing to overwrite a key" in again.output


def test_the_local_network_names_the_dev_stacks_role_holders(tmp_path: Path) -> None:
    """``doctor --network local`` checks a running ``make run`` against the roles it granted."""
    from bridge.devstack.deployment import dev_network
    from bridge.devstack.options import DevOptions

    local = load_networks(environ={})["local"]
    deployer = local.load_deployer(environ={}).address
    dev = dev_network(DevOptions(data_dir=tmp_path))
    assert local.role_holders(deployer) == dev.role_holders(deployer)
    assert local.role_holders(deployer) == {
        "ADMIN_ROLE": ("0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",),
        "REGISTRAR_ROLE": ("0x70997970C51812dc3A010C7d01b50e0d17dc79C8",),
        "ATTESTER_ROLE": ("0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",),
        "PAUSER_ROLE": ("0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65",),
    }
