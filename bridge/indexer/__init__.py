"""The indexer: following the ledger's confirmed blocks (``follow``), writing the store's mirror
of its events (``mirror``), and the license windows and prices the mirror keeps (``licenses``)."""
