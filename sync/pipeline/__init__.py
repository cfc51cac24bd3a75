"""One sync run: its options and result, the engine that walks the plan's partitions, the fetcher
that pages through one window, the row budget, the database-outage gate, and live progress."""
