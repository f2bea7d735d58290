"""The chain layer: JSON-RPC clients with fail-over (``client`` for typed calls, ``rpc`` for raw
batched calls and the first-URL-that-answers rule), the ledger's calldata, role ids and events
(``ledger``, ``events``), the API's read-only views (``views``), revert reasons (``reverts``), the
bridge's signers (``signers``), contract deployment (``deploy``) and the Solidity toolchain
(``toolchain``). The settlement worker, indexer, relay and audit ask the chain through it."""
