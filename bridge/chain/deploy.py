"""Deploy the ledger (with its linked libraries) and the mock stablecoin."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_typing import ChecksumAddress
from web3 import Web3
from web3.contract import Contract

from bridge.chain.toolchain import Artifact, load_artifact

LEDGER = "TwinLedger"
STABLECOIN = "MockStablecoin"


@dataclass(frozen=True)
class LedgerDeployment:
    """Addresses (and bound contracts) of one ledger deployment."""

    ledger: Contract
    token: Contract
    libraries: dict[str, ChecksumAddress]


def contract_at(w3: Web3, name: str, address: str) -> Contract:
    """The compiled contract ``name`` bound to ``address``."""
    return w3.eth.contract(address=Web3.to_checksum_address(address), abi=load_artifact(name).abi)


def deploy_contract(
    w3: Web3,
    artifact: Artifact,
    *args: Any,
    sender: str,
    libraries: dict[str, ChecksumAddress] | None = None,
) -> Contract:
    """Deploys ``artifact`` from ``sender`` (an unlocked or middleware-signed account) and waits."""
    bytecode = (
        artifact.linked_bytecode(libraries or {}) if artifact.libraries else artifact.bytecode
    )
    factory = w3.eth.contract(abi=artifact.abi, bytecode=bytecode)
    tx_hash = factory.constructor(*args).transact({"from": Web3.to_checksum_address(sender)})
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash)
    if receipt["status"] != 1 or receipt["contractAddress"] is None:
        raise RuntimeError(f"deploying {artifact.contract_name} failed in {tx_hash.hex()}")
    return w3.eth.contract(address=receipt["contractAddress"], abi=artifact.abi)


def deploy_libraries(w3: Web3, artifact: Artifact, *, sender: str) -> dict[str, ChecksumAddress]:
    """Deploys every library ``artifact`` links against."""
    return {
        name: deploy_contract(w3, load_artifact(name), sender=sender).address
        for name in artifact.libraries
    }


def deploy_ledger(
    w3: Web3,
    *,
    sender: str,
    admin: str,
    admin_delay: int,
    notice_period: int,
    token: str | None = None,
) -> LedgerDeployment:
    """Deploys the libraries, the ledger and (unless ``token`` is given) a mock stablecoin."""
    ledger_artifact = load_artifact(LEDGER)
    token_contract = (
        contract_at(w3, STABLECOIN, token)
        if token
        else deploy_contract(w3, load_artifact(STABLECOIN), sender=sender)
    )
    libraries = deploy_libraries(w3, ledger_artifact, sender=sender)
    ledger = deploy_contract(
        w3,
        ledger_artifact,
        token_contract.address,
        Web3.to_checksum_address(admin),
        admin_delay,
        notice_period,
        sender=sender,
        libraries=libraries,
    )
    return LedgerDeployment(ledger=ledger, token=token_contract, libraries=libraries)
