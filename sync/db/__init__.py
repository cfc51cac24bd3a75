"""The database: `schema` (the tables), `database` (engines, migrations, and the one translation
of the driver's errors), `connect` (opening the database a command works on), `embedded` (the
no-setup server), `store` and `store_sql` (the bulk path of daily rows), `ledger` (runs and
partitions), `counts` (their counters), `statuses`, `locks` (one run per app) and `status`
(read-only queries behind `taskbox-sync status`)."""
