"""RPC error classification, the ledger's calldata and events, and the worker's keys."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from eth_account import Account
from eth_utils.crypto import keccak

from bridge.chain.client import LogEntry, Web3ChainClient, classify_rpc_error
from bridge.chain.ledger import (
    decode_settle_calldata,
    decode_usages_settled,
    settle_calldata,
    usages_settled_log,
)
from bridge.chain.signers import load_signer, read_password
from bridge.domain.codec import Outcome, Usage
from bridge.errors import (
    ChainUnavailableError,
    ExecutionRevertedError,
    FeeTooLowError,
    InsufficientFundsError,
    NonceTooLowError,
    ReplacementUnderpricedError,
    RpcError,
    SigningKeyError,
    TransactionAlreadyKnownError,
)

KEY = keccak(text="chain client test key")
LEDGER = "0x000000000000000000000000000000000000ED6e"
BRAND = "0x000000000000000000000000000000000000BbBB"


@pytest.mark.parametrize(
    ("code", "message", "expected"),
    [
        (-32000, "nonce too low", NonceTooLowError),
        (-32000, "nonce too low: next nonce 5, tx nonce 4", NonceTooLowError),
        (-32003, "Nonce is too low", NonceTooLowError),
        (-32010, "OldNonce", NonceTooLowError),
        (-32000, "already known", TransactionAlreadyKnownError),
        (-32000, "Known transaction: 0xabc", TransactionAlreadyKnownError),
        (-32003, "transaction already imported", TransactionAlreadyKnownError),
        (-32010, "AlreadyKnown", TransactionAlreadyKnownError),
        (-32010, "tx rejected", TransactionAlreadyKnownError),
        (-32000, "replacement transaction underpriced", ReplacementUnderpricedError),
        (-32000, "replacement fee too low", ReplacementUnderpricedError),
        (-32010, "FeeTooLowToCompete", ReplacementUnderpricedError),
        (-32000, "insufficient funds for gas * price + value", InsufficientFundsError),
        (-32003, "Insufficient funds: balance 0", InsufficientFundsError),
        (-32010, "InsufficientFunds, Account balance: 0", InsufficientFundsError),
        (-32000, "max fee per gas less than block base fee", FeeTooLowError),
        (-32000, "transaction underpriced", FeeTooLowError),
        (None, "execution reverted", ExecutionRevertedError),
    ],
)
def test_rpc_errors_are_classified_by_message_then_code(
    code: int | None, message: str, expected: type[RpcError]
) -> None:
    error = classify_rpc_error("http://node", code, message)
    assert type(error) is expected
    assert (error.rpc_url, error.code, error.message) == ("http://node", code, message)


def test_a_client_with_no_reachable_url_says_which_failed_last() -> None:
    client = Web3ChainClient(
        ["http://127.0.0.1:9/a", "http://127.0.0.1:9/b"], timeout=1, attempts=3, backoff=0
    )
    with pytest.raises(ChainUnavailableError) as caught:
        client.chain_id()
    assert caught.value.rpc_url == "http://127.0.0.1:9/a"  # a, b, then a again
    assert client.current_url == "http://127.0.0.1:9/b"


def test_an_endpoint_answering_http_errors_hands_over_to_the_next() -> None:
    class Unavailable(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.send_response(503)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Unavailable)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        busy = f"http://127.0.0.1:{server.server_address[1]}"
        client = Web3ChainClient([busy, "http://127.0.0.1:9"], timeout=2, attempts=2, backoff=0)
        with pytest.raises(ChainUnavailableError) as caught:
            client.chain_id()
    finally:
        server.shutdown()
        server.server_close()
    assert caught.value.rpc_url == "http://127.0.0.1:9"  # the 503 one first, then the next
    assert client.current_url == busy


def test_a_client_needs_a_url() -> None:
    with pytest.raises(ValueError, match="at least one RPC URL"):
        Web3ChainClient([])


def test_settle_calldata_round_trips() -> None:
    word = Usage(usage_id=9, twin_id=3, used_at=1_700_000_000, quantity=2, usage_type=1).encode()
    attester = Account.from_key(KEY).address
    data = settle_calldata(1234, [(BRAND.lower(), [word])], attester.lower(), b"\x01" * 65)
    assert data[:4] == keccak(text="settle((uint256,(address,uint256[])[]),address,bytes)")[:4]
    assert decode_settle_calldata(data) == (1234, [(BRAND, [word])], attester, b"\x01" * 65)
    with pytest.raises(ValueError, match="not settle calldata"):
        decode_settle_calldata(b"\x00" * 4 + data[4:])


def test_usages_settled_events_decode_from_logs_of_the_ledger_only() -> None:
    usage = Usage(usage_id=9, twin_id=3, used_at=1_700_000_000, quantity=2, usage_type=1)
    attester = Account.from_key(KEY).address
    topics, data = usages_settled_log(
        batch_digest=b"\x07" * 32,
        brand=BRAND,
        attester=attester,
        paid=0,
        results=[usage.encode() | Outcome.TWIN_PAUSED],
    )
    log = LogEntry(LEDGER, topics, data, 5, "0x" + "ab" * 32, "0x" + "cd" * 32, 3)
    other = LogEntry(BRAND, topics, data, 5, "0x" + "ab" * 32, "0x" + "cd" * 32, 4)
    [group] = decode_usages_settled([other, log], ledger=LEDGER.lower())
    assert (group.batch_digest, group.brand, group.attester, group.paid, group.log_index) == (
        b"\x07" * 32,
        BRAND,
        attester,
        0,
        3,
    )
    assert group.results == ((usage, Outcome.TWIN_PAUSED),)


# ---------------------------------------------------------------- keys


def test_a_raw_key_is_accepted_on_a_local_dev_chain() -> None:
    for chain_id in (31337, 1337):
        account = load_signer("relayer", chain_id=chain_id, private_key="0x" + KEY.hex())
        assert account.address == Account.from_key(KEY).address


def test_a_raw_key_is_refused_on_a_public_chain() -> None:
    with pytest.raises(SigningKeyError) as caught:
        load_signer("attester", chain_id=11155111, private_key="0x" + KEY.hex())
    assert str(caught.value) == (
        "attester key: a raw private key is refused on chain 11155111; raw keys are for local "
        "dev chains (1337, 31337), use a keystore file"
    )


def test_a_keystore_is_decrypted_with_its_password(tmp_path: Path) -> None:
    keystore = tmp_path / "relayer.json"
    keystore.write_text(
        json.dumps(Account.encrypt(KEY, "s3cret", kdf="pbkdf2", iterations=1024)),
        encoding="utf-8",
    )
    (tmp_path / "password").write_text("s3cret\n", encoding="utf-8")
    password = read_password(password_file=tmp_path / "password", password=None)
    account = load_signer("relayer", chain_id=1, keystore=keystore, password=password)
    assert account.address == Account.from_key(KEY).address
    with pytest.raises(SigningKeyError, match="cannot decrypt keystore"):
        load_signer("relayer", chain_id=1, keystore=keystore, password="wrong")  # noqa: S106 - a test keystore
    with pytest.raises(SigningKeyError, match="no password"):
        load_signer("relayer", chain_id=1, keystore=keystore)
    with pytest.raises(SigningKeyError, match="cannot read keystore"):
        load_signer("relayer", chain_id=1, keystore=tmp_path / "missing.json", password="x")  # noqa: S106
    with pytest.raises(SigningKeyError, match="exactly one"):
        load_signer("relayer", chain_id=1)
    assert read_password(password_file=None, password="from-env") == "from-env"  # noqa: S106


def test_settings_name_the_keys_and_the_relayer_defaults_to_the_attester(tmp_path: Path) -> None:
    from pydantic import SecretStr

    from bridge.chain.signers import signers_from_settings
    from bridge.settings import Settings

    relayer_key = keccak(text="another key")
    keystore = tmp_path / "relayer.json"
    keystore.write_text(
        json.dumps(Account.encrypt(relayer_key, "pw", kdf="pbkdf2", iterations=1024)),
        encoding="utf-8",
    )
    only_attester = Settings(attester_private_key=SecretStr("0x" + KEY.hex()))
    attester, relayer = signers_from_settings(only_attester, chain_id=31337)
    assert attester.address == relayer.address == Account.from_key(KEY).address

    both = only_attester.model_copy(
        update={"relayer_keystore": keystore, "keystore_password": SecretStr("pw")}
    )
    attester, relayer = signers_from_settings(both, chain_id=1337)
    assert relayer.address == Account.from_key(relayer_key).address
    with pytest.raises(SigningKeyError, match="raw private key is refused on chain 1;"):
        signers_from_settings(both, chain_id=1)
