"""A PostgreSQL cluster that a test owns: initdb into a temporary directory, served on a free
loopback port with trust auth, stopped and started at will (an outage the test controls).

The machinery of a fixture (test_outage's `cluster`), kept apart from tests/helpers.py for its
size and because nothing else needs it.

Never the machine's shared server: other tests and people use that one. The binaries are the
system's (/usr/lib/postgresql/N/bin, newest first), else pgserver's bundled ones. PostgreSQL
refuses to run as root, so as root the cluster runs as the `postgres` user (or `pgserver`,
`nobody`), which owns the directory.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import warnings
from pathlib import Path

# Durability is not what these tests are about: a cluster that syncs nothing starts in ~0.3 s.
_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "unix_socket_directories": "''",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "100",
    "shared_buffers": "32MB",
    "log_min_messages": "warning",
}


def postgres_bindir(*, system_first: bool = True) -> Path:
    """A directory holding initdb, pg_ctl and postgres."""
    system = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    for bindir in system if system_first else []:
        if (bindir / "initdb").exists() and (bindir / "pg_ctl").exists():
            return bindir
    # The fallback: pgserver's bundled binaries, made reachable for the user they run as (as
    # pgserver itself does when it runs as root).
    with warnings.catch_warnings():  # platformdirs warns about XDG_RUNTIME_DIR on servers
        warnings.simplefilter("ignore")
        import pgserver._commands  # type: ignore[import-untyped]
        import pgserver.utils  # type: ignore[import-untyped]

    bindir = Path(pgserver._commands.POSTGRES_BIN_PATH)
    if os.geteuid() == 0:
        pgserver.utils.ensure_prefix_permissions(bindir)
        pgserver.utils.ensure_folder_permissions(bindir, 0o055)
        pgserver.utils.ensure_folder_permissions(bindir.parent / "lib", 0o044)
    return bindir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_as() -> str | None:
    """The user to run PostgreSQL as: None when not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "pgserver", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise RuntimeError("running as root and no unprivileged user to run PostgreSQL as")


class ScratchCluster:
    """One throw-away cluster; `start()`/`stop()` are synchronous (call them in a thread from
    async code so the event loop, and a sandbox it serves, keep running)."""

    def __init__(self) -> None:
        self.bindir = postgres_bindir()
        self.user = _run_as()
        # Not under pytest's tmp_path: its parents are private to root.
        self.root = Path(tempfile.mkdtemp(prefix="taskbox-outage-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = free_port()
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bindir / args[0]), *args[1:]],
            user=self.user,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=120,
            check=check,
        )

    def init(self) -> None:
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
            "--no-sync", "--locale=C.UTF-8",
        )  # fmt: skip
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(f"port = {self.port}\n")
            for name, value in _SETTINGS.items():
                conf.write(f"{name} = {value}\n")

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        """`fast` ends sessions with an admin-shutdown error first (a restart, a switchover);
        `immediate` drops them without a word (a crash, a failover)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    @property
    def running(self) -> bool:
        result = self._run("pg_ctl", "-D", str(self.data), "status", check=False)
        return result.returncode == 0

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            if self.running:
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)
