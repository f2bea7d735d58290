"""``twin-bridge dev`` (``make run``): anvil, the contracts, the demo world (``demo``), the API,
worker and indexer as child processes, on one data directory."""
