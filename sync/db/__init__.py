"""The database: the schema, engines and migrations, the embedded server, the bulk store of daily
rows, the run ledger, and the read-only queries behind `status`."""
