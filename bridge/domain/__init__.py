"""The rules the bridge shares with the ledger, free of I/O: the usage word layout and outcomes
(``codec``), usage types (``usage``), the EIP-712 types (``eip712``), the license-version rule
(``licenses``) and the EIP-1559 fee policy (``fees``)."""
