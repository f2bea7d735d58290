"""The bridge's durable store: SQLite (WAL) by default, PostgreSQL for several processes."""
