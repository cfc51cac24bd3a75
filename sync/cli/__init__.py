"""The command line: `main` (parsing, settings, one command, errors to one stderr line), `jobs`
(nightly and backfill), `status`, `talents`, `demo`, `summary` (a run's closing table), `tables`
(the one table renderer, by display width) and `exits` (error classes to exit statuses)."""
