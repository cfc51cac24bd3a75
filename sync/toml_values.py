"""Checked values of the apps file's TOML tables: every refusal is one `AppsFileError` line
naming the file, the table (an app, or [provider]) and the key, and never a secret's value.
Pure: `sync.apps` says which keys a table takes; this module reads them."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sync.errors import AppsFileError
from sync.settings import Secret

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_SECONDS = 300.0  # the most a program of the file (token or ticket command) may take


@dataclasses.dataclass(slots=True)
class Where:
    """The file and the app a refusal is about (the id once it is known)."""

    path: str
    position: int
    app: str | None = None

    def error(self, key: str, problem: str) -> AppsFileError:
        return AppsFileError(self.path, problem, app=self.app, position=self.position, key=key)


def parse_file(path: Path, where: str) -> dict[str, Any]:
    try:
        raw = path.expanduser().read_bytes()
    except OSError as exc:
        raise AppsFileError(where, f"cannot read: {exc.strerror or type(exc).__name__}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise AppsFileError(where, f"not UTF-8 text (byte {exc.start})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        first = (str(exc).splitlines() or ["?"])[0]
        raise AppsFileError(where, f"not valid TOML: {first}") from None


def command(table: dict[str, Any], at: Where, key: str) -> tuple[str, ...]:
    """A program and its arguments, as a list (never a shell line)."""
    value = table.get(key)
    if value is None:
        raise at.error(key, f'missing; auth "{key}" needs ["program", "arg", ...]')
    if isinstance(value, str):
        raise at.error(key, 'expected a list such as ["program", "arg"] (no shell is used)')
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise at.error(key, f"expected a non-empty list of strings, got {kind(value)}")
    if not value[0].strip():
        raise at.error(key, "expected the program first, got an empty string")
    return tuple(value)


def seconds(table: dict[str, Any], at: Where, key: str) -> float | None:
    value = table.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise at.error(key, f"expected seconds, got {kind(value)}")
    if not 0 < value <= MAX_SECONDS:
        raise at.error(key, f"expected seconds above 0 and at most {MAX_SECONDS:g}")
    return float(value)


def text(table: dict[str, Any], key: str, at: Where) -> str | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise at.error(key, f"expected a string, got {kind(value)}")
    return value.strip() or None


def secret(
    table: dict[str, Any],
    name: str,
    required: bool,
    need: str,
    at: Where,
    base: Path,
    env: Mapping[str, str],
) -> Secret | None:
    """The secret `name` from `<name>_env` or `<name>_file`, loaded; None if optional and absent."""
    env_key, file_key = name + "_env", name + "_file"
    if env_key in table and file_key in table:
        raise at.error(file_key, f"{env_key} is given too; keep one of the two")
    if env_key in table:
        var = table[env_key]
        if not isinstance(var, str):
            raise at.error(env_key, f"expected a string, got {kind(var)}")
        if not ENV_NAME.fullmatch(var):  # perhaps the secret itself: never echoed
            raise at.error(
                env_key, "expected the name of an environment variable (letters, digits, _)"
            )
        value = env.get(var)
        if value is None:
            raise at.error(env_key, f"environment variable {var} is not set")
        return checked(value.strip(), env_key, f"environment variable {var}", at)
    if file_key in table:
        given = table[file_key]
        if not isinstance(given, str):
            raise at.error(file_key, f"expected a string, got {kind(given)}")
        if not given.strip():
            raise at.error(file_key, "expected the path of a file holding the secret")
        file = base / Path(given).expanduser()
        try:
            text = file.read_text(encoding="utf-8-sig")
        except OSError as exc:
            raise at.error(
                file_key, f"cannot read {shown(str(file))}: {exc.strerror or type(exc).__name__}"
            ) from None
        except UnicodeDecodeError:
            raise at.error(file_key, f"{shown(str(file))} is not UTF-8 text") from None
        return checked(text.strip(), file_key, shown(str(file)), at)
    if required:
        raise at.error(
            name,
            f"missing; {need} needs it from {env_key} (an environment variable's name) "
            f"or {file_key} (a file's path)",
        )
    return None


def checked(value: str, key: str, source: str, at: Where) -> Secret:
    if not value:
        raise at.error(key, f"{source} is empty")
    if "\n" in value or "\r" in value:
        raise at.error(key, f"{source} holds more than one line; expected the secret alone")
    return Secret(value)


# -- wording ---------------------------------------------------------------------------------


def kind(value: object) -> str:
    """What a TOML value is, in words (the value itself is never shown: it may be a secret)."""
    if isinstance(value, bool):
        return "a boolean"
    kinds = {
        str: "a string",
        int: "an integer",
        float: "a float",
        dict: "a table",
        list: "an array",
    }
    return next((w for t, w in kinds.items() if isinstance(value, t)), "a date or time")


def shown(text: str) -> str:
    """A name from the file as it can be printed on one line."""
    return text if text.isprintable() else ascii(text)


def quoted(text: str) -> str:
    return f'"{text}"' if text.isprintable() and '"' not in text else ascii(text)


def brief(names: Sequence[str], most: int = 6) -> str:
    listed = ", ".join(shown(n) for n in names[:most])
    return listed + (f", … ({len(names)} in all)" if len(names) > most else "")
