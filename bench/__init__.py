"""The benchmark of taskbox-sync: `python -m bench` (full) or `python -m bench --quick` (CI).

Modules: `cli` (the command), `run` (the orchestration), `profiles` (scenarios and data sizes),
`scenario` (one scenario in its own process), `instrument` (probes), `measure`, `pg`,
`sandbox`, `sandbox_server`, `baseline` (the plain way), `report` (table, checks, targets), and
`experiments` (engine changes tried with `--patch`, never edited in sync/).
"""
