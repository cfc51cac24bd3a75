"""`python -m sync` runs the CLI."""

from sync.cli.main import main

raise SystemExit(main())
