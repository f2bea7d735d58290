"""What comes in through the brand API, checked before it is stored: usage reports (``ingest``,
written in groups by ``grouping``), the owner actions the relay takes (``owner_messages`` for their
form, ``owner_actions`` for the chain's checks) and the brands' API keys (``api_keys``)."""
