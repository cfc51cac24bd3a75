"""The test suite of taskbox-sync, a package: fixtures in `tests/conftest.py`, plain helpers in
`tests/helpers.py`, the scratch PostgreSQL cluster of the outage tests in `tests/scratch_pg.py`,
and the sandbox's own tests in `tests/sandbox/`."""
