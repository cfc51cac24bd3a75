"""The wheel users install (issue #11): it carries the Alembic migrations inside `sync`, installs
no top-level package but `sync`, declares the `taskbox-sync` command, and its own files migrate a
database from a directory outside the checkout. `--version` prints the installed version."""

from __future__ import annotations

import asyncio
import configparser
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from importlib import metadata
from pathlib import Path

import asyncpg
import pytest

import sync
from sync.db.database import head_revision
from tests.helpers import REPO, cli_env, plain_url, run_cli

DIST = "taskbox-sync"
VERSION = metadata.version(DIST)
DIST_INFO = f"taskbox_sync-{VERSION}.dist-info"


def _ignore_build_output(directory: str, names: list[str]) -> set[str]:
    """Hidden directories (.git, .venv, caches), virtualenvs, build output and bench results."""
    here = Path(directory)
    skipped = {"build", "dist", "__pycache__"}
    return {
        n
        for n in names
        if n in skipped
        or n.endswith(".egg-info")
        or (here / n / "pyvenv.cfg").exists()
        or ((here / n).is_dir() and n.startswith("."))
        or (here.name == "bench" and n == "results")
    }


def _build_requirement_met() -> bool:
    """Whether this venv has the setuptools pyproject.toml builds with (>= 77): then the wheel is
    built without an isolated build environment (faster, and needs no package index)."""
    try:
        major = int(metadata.version("setuptools").split(".")[0])
    except (metadata.PackageNotFoundError, ValueError):
        return False
    return major >= 77


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel `pip wheel` builds from the repository.

    Built from a clean copy of the source: a wheel built in place also gets whatever an earlier
    build left in build/lib (setuptools copies that directory whole)."""
    root = tmp_path_factory.mktemp("packaging")
    source, out = root / "source", root / "dist"
    shutil.copytree(REPO, source, ignore=_ignore_build_output, symlinks=True)
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out)]
    if _build_requirement_met():
        command.append("--no-build-isolation")
    built = subprocess.run(
        [*command, str(source)], capture_output=True, text=True, timeout=240, check=False
    )
    assert built.returncode == 0, built.stdout + built.stderr
    wheels = list(out.glob("*.whl"))
    assert [w.name for w in wheels] == [f"taskbox_sync-{VERSION}-py3-none-any.whl"]
    return wheels[0]


def _names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as zf:
        return set(zf.namelist())


def _read(wheel: Path, name: str) -> str:
    with zipfile.ZipFile(wheel) as zf:
        return zf.read(name).decode()


def test_wheel_carries_the_migrations_inside_sync(wheel: Path) -> None:
    """env.py, the revision template and every revision are in the wheel as sync/migrations/…."""
    names = _names(wheel)
    for name in (
        "env.py",
        "script.py.mako",
        "versions/0001_initial_schema.py",
        "versions/0002_app_of_every_row.py",
    ):
        assert f"sync/migrations/{name}" in names, name
    checkout = {
        p.relative_to(REPO / "migrations").as_posix()
        for p in (REPO / "migrations").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert checkout, "the repository keeps its migrations at the top level"
    missing = {f"sync/migrations/{name}" for name in checkout} - names
    assert not missing, missing


def test_wheel_installs_sync_and_nothing_else(wheel: Path) -> None:
    """No top-level `bench`, `tests` or `migrations`; no module of sync/ or its subpackages lost."""
    names = _names(wheel)
    assert {n.split("/")[0] for n in names} == {"sync", DIST_INFO}
    assert _read(wheel, f"{DIST_INFO}/top_level.txt").split() == ["sync"]
    modules = {
        p.relative_to(REPO).as_posix()
        for p in (REPO / "sync").rglob("*")
        if p.suffix in (".py", ".typed") and "__pycache__" not in p.parts
    }
    assert "sync/sandbox/__init__.py" in modules
    missing = modules - names
    assert not missing, missing


def test_wheel_declares_the_command_and_version(wheel: Path) -> None:
    """The `taskbox-sync` console script is sync.cli.main:main; the wheel's version is this one."""
    entry_points = configparser.ConfigParser()
    entry_points.read_string(_read(wheel, f"{DIST_INFO}/entry_points.txt"))
    assert dict(entry_points["console_scripts"]) == {"taskbox-sync": "sync.cli.main:main"}
    meta = Parser().parsestr(_read(wheel, f"{DIST_INFO}/METADATA"))
    assert (meta["Name"], meta["Version"]) == (DIST, VERSION)


async def _run(*args: str, cwd: Path, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_wheel_migrates_from_outside_the_checkout(
    wheel: Path, tmp_path: Path, empty_database_url: str
) -> None:
    """The wheel's files alone (unpacked as pip installs them, run from a directory that is not
    the checkout) find their migrations and bring an empty database to head."""
    site, elsewhere = tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    env = cli_env(None, empty_database_url, PYTHONPATH=str(site))

    where = "import sync.db.database as d; print(d.__file__); print(d.MIGRATIONS_DIR)"
    status, out, err = await _run("-c", where, cwd=elsewhere, env=env)
    assert status == 0, err
    assert out.split() == [
        str(site / "sync" / "db" / "database.py"),
        str(site / "sync" / "migrations"),
    ]

    status, out, err = await _run("-m", "sync", "migrate", cwd=elsewhere, env=env)
    assert status == 0, out + err
    assert "schema is at head" in out
    conn = await asyncpg.connect(plain_url(empty_database_url))
    try:
        assert await conn.fetchval("SELECT version_num FROM alembic_version") == head_revision()
    finally:
        await conn.close()

    status, out, err = await _run("-m", "sync", "--version", cwd=elsewhere, env=env)
    assert (status, out.strip(), err) == (0, f"taskbox-sync {VERSION}", "")


def test_version_is_the_installed_distributions() -> None:
    """sync.__version__ comes from the package metadata, not a copy that could drift."""
    assert sync.__version__ == VERSION
    assert VERSION != "0+unknown"


async def test_version_flag_prints_it() -> None:
    """`taskbox-sync --version` (the console script and `python -m sync`) prints the version."""
    env = cli_env(None, "postgresql://unused@127.0.0.1:9/unused")
    result = await run_cli("--version", env=env)
    assert (result.status, result.stdout.strip(), result.err_lines) == (
        0,
        f"taskbox-sync {VERSION}",
        [],
    ), result
    script = Path(sys.executable).parent / "taskbox-sync"
    assert script.exists(), f"{script}: the package is not installed in this venv"
    status, out, err = await _run(str(script), "--version", cwd=REPO, env=env)
    assert (status, out.strip(), err) == (0, f"taskbox-sync {VERSION}", "")
