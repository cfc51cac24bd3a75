"""One sync run, from plan to ledger: `engine` (the run's life: lock, ledger row, workers,
signals, end), `partition` (one partition's attempts: fetch, map, stage, merge), `fetcher` (a
window's pages, one ahead), `budget` (rows in memory), `outage` (waiting out a lost database),
`run_lock`, `progress` (a run's live figures, handed to a watcher), `runs` (what a run is asked
and what it did, with its notes) and `defaults` (the default sizes, importing nothing).

The run is handed its parts (database engine, API client, options, plan) and passes data on:
pages from the API, records to the store, counts to the ledger.
"""
