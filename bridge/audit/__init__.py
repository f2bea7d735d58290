"""The audit, from the chain's events alone: ``scan`` reads the ledger's logs and settlement
transactions, ``rebuild`` (with ``settle`` and ``verify``) rebuilds ``state`` from them and checks
every batch, ``balances`` compares the result with the ledger's views, ``report`` and ``export``
write it; ``run`` ties them together, ``cache`` serves it to the API and ``reconcile`` compares a
bridge database with it."""
