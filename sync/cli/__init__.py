"""The command line: argument parsing, the job commands (nightly, backfill, status, demo, talents),
the closing summary, and the one table that maps errors to exit statuses."""
