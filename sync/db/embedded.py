"""The embedded PostgreSQL used when DATABASE_URL is unset: a pip-installed server (pgserver)
in a per-user data directory, reached over a Unix socket."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

from sync.errors import DatabaseError

log = logging.getLogger(__name__)
_RUNNING: list[object] = []


def start_embedded(data_dir: Path) -> str:
    """Start (or join) the embedded server whose data lives in `data_dir`/pg.

    Returns an asyncpg URL. The server stops when the last process using it exits.
    """
    pgdata = data_dir / "pg"
    pgdata.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings():
            # platformdirs warns about XDG_RUNTIME_DIR on servers without a login session.
            warnings.simplefilter("ignore")
            import pgserver  # heavy: only when used
    except ImportError as exc:  # pragma: no cover - pgserver is a dependency
        raise DatabaseError("embedded PostgreSQL unavailable: pip install pgserver") from exc
    try:
        server = pgserver.get_server(str(pgdata), cleanup_mode="stop")  # type: ignore[attr-defined]
    except Exception as exc:  # pgserver raises plain Exceptions with the server's log
        raise DatabaseError(f"embedded PostgreSQL failed to start in {pgdata}: {exc}") from exc
    _RUNNING.append(server)  # pgserver stops its server when the object goes away
    # The socket lives in the data directory; asyncpg takes it as host=.
    return f"postgresql+asyncpg://postgres@/postgres?host={pgdata}"
