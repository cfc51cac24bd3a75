"""`python -m sync.sandbox [flags]`: the same as `taskbox-sync sandbox [flags]`."""

import sys

from sync.sandbox.cli import run_cli

if __name__ == "__main__":
    sys.exit(run_cli())
