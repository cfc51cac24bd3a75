"""The apps file: several mini-apps in one TOML file, each refusal one line naming the file, the
app and the key and never a secret, secrets loaded at load time, and each app laid over the base
settings (pure: no database, no server)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import sync.apps
from sync.apps import (
    AUTH_KEYS,
    AppConfig,
    AppsFile,
    Auth,
    app_from_settings,
    load_apps_file,
    secrets_of_apps,
    settings_for,
)
from sync.errors import AppsFileError, SettingsError
from sync.settings import Secret, Settings

ENV = {
    "APP1_SECRET": "s3cr3t-env-ONE",
    "APP1_APP_SECRET": "s3cr3t-app-TWO",
    "TOKEN": "s3cr3t-token-THREE",
    "BLANK": "  \n",
    "TWO_LINES": "s3cr3t-line-A\ns3cr3t-line-B",
}
FILE_SECRET = "s3cr3t-file-FOUR"
LITERAL = "s3cr3t-literal-FIVE"  # a secret wrongly written in the file
SECRETS = [*ENV.values(), FILE_SECRET, LITERAL, "s3cr3t-line-A"]

A = '[[app]]\nid = "tt_a"\n'
A_OK = A + 'client_secret_env = "APP1_SECRET"\n'
T = '[[app]]\nid = "tt_t"\nauth = "access_token"\n'
P_HEAD = '[provider]\ncomponent_appid = "tt_comp"\n'
PROVIDER = P_HEAD + 'component_secret_env = "APP1_SECRET"\ncomponent_ticket_file = "ticket"\n'


def _write(tmp_path: Path, content: str | bytes) -> Path:
    """The apps file in tmp_path/conf, beside a folder of secret files ({dir} in the content)."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "good").write_text(FILE_SECRET + "\n")
    (secrets / "blank").write_text(" \n\n")
    (secrets / "two").write_text("s3cr3t-line-A\ns3cr3t-line-B\n")
    (secrets / "folder").mkdir()
    (secrets / "latin1").write_bytes(b"caf\xe9")
    conf = tmp_path / "conf"
    conf.mkdir()
    path = conf / "apps.toml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content.replace("{dir}", str(secrets)))
    return path


def _refusal(path: Path, environ: dict[str, str] | None = None) -> AppsFileError:
    with pytest.raises(AppsFileError) as info:
        load_apps_file(path, ENV if environ is None else environ)
    return info.value


# content, where (the message's prefix after the file: app and key), fragment of the problem
REFUSALS = [
    # the file as a whole
    pytest.param(b"\xff\xfe[[app]]", "", "not UTF-8 text", id="not-utf8"),
    pytest.param("[[app]\nid = 1\n", "", "not valid TOML: ", id="not-toml"),
    pytest.param("", "", "no [[app]] table", id="empty-file"),
    pytest.param("app = []\n", "", "no [[app]] table", id="empty-app-array"),
    pytest.param('[app]\nid = "tt_a"\n', "app", "expected an array of tables", id="app-table"),
    pytest.param('app = ["tt_a"]\n', "app", "expected an array of tables", id="app-strings"),
    pytest.param("[bogus]\nx = 1\n" + A_OK, "bogus", "unknown top-level key", id="top"),
    # the [provider] table
    pytest.param("provider = 1\n" + A_OK, "provider", "expected a table", id="prov-kind"),
    pytest.param(
        "[provider]\nx = 1\n" + A_OK, "[provider] x", "unknown key", id="prov-unknown-key"
    ),
    pytest.param(
        P_HEAD + 'component_secret = "' + LITERAL + '"\ncomponent_ticket_env = "TOKEN"\n' + A_OK,
        "[provider] component_secret",
        "secrets are not written",
        id="prov-literal-secret",
    ),
    pytest.param(
        '[provider]\ncomponent_secret_env = "APP1_SECRET"\ncomponent_ticket_env = "TOKEN"\n' + A_OK,
        "[provider] component_appid",
        "missing",
        id="prov-no-appid",
    ),
    pytest.param(
        P_HEAD + 'component_secret_env = "APP1_SECRET"\n' + A_OK,
        "[provider] component_ticket_file",
        "give exactly one of",
        id="prov-no-ticket",
    ),
    pytest.param(
        P_HEAD
        + 'component_secret_env = "APP1_SECRET"\ncomponent_ticket_env = "TOKEN"\n'
        + 'component_ticket_file = "t"\n'
        + A_OK,
        "[provider] component_ticket_file",
        "got component_ticket_file, component_ticket_env",
        id="prov-two-tickets",
    ),
    pytest.param(
        P_HEAD + 'component_ticket_env = "TOKEN"\n' + A_OK,
        "[provider] component_secret",
        "missing",
        id="prov-no-secret",
    ),
    pytest.param(
        P_HEAD + 'component_secret_env = "NOPE"\ncomponent_ticket_env = "TOKEN"\n' + A_OK,
        "[provider] component_secret_env",
        "environment variable NOPE is not set",
        id="prov-unset-secret",
    ),
    pytest.param(
        P_HEAD + 'component_secret_env = "APP1_SECRET"\ncomponent_ticket_command = "x y"\n' + A_OK,
        "[provider] component_ticket_command",
        "expected a list",
        id="prov-shell-command",
    ),
    # the id
    pytest.param("[[app]]\nname = 'x'\n", "app #1: id", "missing", id="id-missing"),
    pytest.param(
        "[[app]]\nid = 7\n", "app #1: id", "expected a string, got an integer", id="id-int"
    ),
    pytest.param("[[app]]\nid = '  '\n", "app #1: id", "not blank", id="id-blank"),
    pytest.param("[[app]]\nid = 'tt a'\n", "app #1: id", "no spaces", id="id-space"),
    pytest.param("[[app]]\nid = 'tt\"a'\n", "app #1: id", "no spaces or quotes", id="id-quote"),
    pytest.param(A_OK + A_OK, 'app "tt_a" (#2): id', "also the id of app #1", id="duplicate"),
    # keys
    pytest.param(
        A + 'secret_env = "APP1_SECRET"\n',
        'app "tt_a" (#1): secret_env',
        "unknown key; an app takes id, name, auth, qps, agency_client_key, client_key, "
        "client_secret_env/_file",
        id="unknown-key",
    ),
    pytest.param(A_OK + "[app.extra]\nx = 1\n", 'app "tt_a" (#1): extra', "unknown key", id="sub"),
    pytest.param(
        A + f'client_secret = "{LITERAL}"\n',
        'app "tt_a" (#1): client_secret',
        "secrets are not written in the apps file; use client_secret_env or client_secret_file",
        id="literal-client-secret",
    ),
    pytest.param(
        T + f'access_token = "{LITERAL}"\n',
        'app "tt_t" (#1): access_token',
        "use access_token_env or access_token_file",
        id="literal-token",
    ),
    pytest.param(
        A_OK + f'app_secret = "{LITERAL}"\n',
        'app "tt_a" (#1): app_secret',
        "use app_secret_env or app_secret_file",
        id="literal-app-secret",
    ),
    pytest.param(A_OK + "name = 5\n", 'app "tt_a" (#1): name', "got an integer", id="name-int"),
    # auth
    pytest.param(
        A + 'auth = "token_commands"\n',
        'app "tt_a" (#1): auth',
        'unknown value "token_commands"; expected "client_credentials" or "access_token" or '
        '"token_command"',
        id="auth-unknown",
    ),
    pytest.param(
        A + 'auth = "token_command"\n',
        'app "tt_a" (#1): token_command',
        'missing; auth "token_command" needs ["program", "arg", ...]',
        id="token-command-missing",
    ),
    pytest.param(
        A + 'auth = "token_command"\ntoken_command = "helper --json"\n',
        'app "tt_a" (#1): token_command',
        "no shell is used",
        id="token-command-string",
    ),
    pytest.param(
        A + 'auth = "token_command"\ntoken_command = []\n',
        'app "tt_a" (#1): token_command',
        "expected a non-empty list of strings",
        id="token-command-empty",
    ),
    pytest.param(
        A + 'auth = "token_command"\ntoken_command = ["helper"]\ntoken_timeout = 900\n',
        'app "tt_a" (#1): token_timeout',
        "at most 300",
        id="token-timeout-range",
    ),
    pytest.param(
        A_OK + 'token_command = ["helper"]\n',
        'app "tt_a" (#1): token_command',
        'not used with auth "client_credentials"',
        id="token-command-with-client-credentials",
    ),
    pytest.param(A + 'auth = "provider"\n', 'app "tt_a" (#1): auth', "[provider] table", id="prov"),
    pytest.param(
        A + 'auth = "provider"\nclient_secret_env = "APP1_SECRET"\n',
        'app "tt_a" (#1): client_secret_env',
        'not used with auth "provider"',
        id="prov-app-secret",
    ),
    pytest.param(A + "auth = 1\n", 'app "tt_a" (#1): auth', "expected a string", id="auth-int"),
    pytest.param(
        A_OK + 'access_token_env = "TOKEN"\n',
        'app "tt_a" (#1): access_token_env',
        'not used with auth "client_credentials"',
        id="token-with-client-credentials",
    ),
    pytest.param(
        T + 'access_token_env = "TOKEN"\nclient_key = "k"\n',
        'app "tt_t" (#1): client_key',
        'not used with auth "access_token"; it takes id, name, auth, qps, agency_client_key, '
        "access_token_env/_file",
        id="client-key-with-access-token",
    ),
    # where each secret comes from
    pytest.param(
        A_OK + 'client_secret_file = "{dir}/good"\n',
        'app "tt_a" (#1): client_secret_file',
        "client_secret_env is given too; keep one of the two",
        id="env-and-file",
    ),
    pytest.param(
        A,
        'app "tt_a" (#1): client_secret',
        'missing; auth "client_credentials" needs it from client_secret_env',
        id="no-client-secret",
    ),
    pytest.param(T, 'app "tt_t" (#1): access_token', "missing", id="no-token"),
    pytest.param(
        A_OK + '[[app]]\nid = "tt_b"\nclient_secret_env = "APP2_SECRET"\n',
        'app "tt_b" (#2): client_secret_env',
        "environment variable APP2_SECRET is not set",
        id="env-unset",
    ),
    pytest.param(
        A + 'client_secret_env = "BLANK"\n',
        'app "tt_a" (#1): client_secret_env',
        "environment variable BLANK is empty",
        id="env-empty",
    ),
    pytest.param(
        A + 'client_secret_env = "TWO_LINES"\n',
        'app "tt_a" (#1): client_secret_env',
        "holds more than one line",
        id="env-two-lines",
    ),
    pytest.param(
        A + f'client_secret_env = "{LITERAL}"\n',
        'app "tt_a" (#1): client_secret_env',
        "expected the name of an environment variable",
        id="env-holds-the-secret",
    ),
    pytest.param(
        A + "client_secret_env = 5\n",
        'app "tt_a" (#1): client_secret_env',
        "expected a string, got an integer",
        id="env-int",
    ),
    pytest.param(
        A_OK + 'app_secret_env = "APP9"\n',
        'app "tt_a" (#1): app_secret_env',
        "environment variable APP9 is not set",
        id="optional-secret-unset",
    ),
    pytest.param(
        A + 'client_secret_file = "{dir}/nothing"\n',
        'app "tt_a" (#1): client_secret_file',
        "/secrets/nothing: No such file or directory",
        id="file-missing",
    ),
    pytest.param(
        A + 'client_secret_file = "{dir}/folder"\n',
        'app "tt_a" (#1): client_secret_file',
        "Is a directory",
        id="file-a-folder",
    ),
    pytest.param(
        A + 'client_secret_file = "{dir}/blank"\n',
        'app "tt_a" (#1): client_secret_file',
        "/secrets/blank is empty",
        id="file-empty",
    ),
    pytest.param(
        A + 'client_secret_file = "{dir}/two"\n',
        'app "tt_a" (#1): client_secret_file',
        "holds more than one line",
        id="file-two-lines",
    ),
    pytest.param(
        A + 'client_secret_file = "{dir}/latin1"\n',
        'app "tt_a" (#1): client_secret_file',
        "is not UTF-8 text",
        id="file-not-utf8",
    ),
    pytest.param(
        A + 'client_secret_file = " "\n',
        'app "tt_a" (#1): client_secret_file',
        "expected the path of a file",
        id="file-blank-path",
    ),
    # qps
    *(
        pytest.param(
            A_OK + f"qps = {value}\n",
            'app "tt_a" (#1): qps',
            "expected a number above 0 and at most 10",
            id=f"qps-{value}",
        )
        for value in ("0", "-1", "10.5", "11", "nan", "inf")
    ),
    pytest.param(A_OK + 'qps = "5"\n', 'app "tt_a" (#1): qps', "got a string", id="qps-string"),
    pytest.param(A_OK + "qps = true\n", 'app "tt_a" (#1): qps', "got a boolean", id="qps-bool"),
]


@pytest.mark.parametrize(("content", "where", "fragment"), REFUSALS)
def test_each_refusal_is_one_line_naming_file_app_and_key(
    tmp_path: Path, content: str | bytes, where: str, fragment: str
) -> None:
    """A wrong file is refused with one line: the file, the app, the key, what is wrong; never
    a secret's value, never a chained traceback; a SettingsError (exit 2)."""
    path = _write(tmp_path, content)
    error = _refusal(path)
    message = str(error)
    assert isinstance(error, SettingsError)
    assert "\n" not in message and "\r" not in message
    assert message.startswith(f"{path}: {where}: " if where else f"{path}: "), message
    assert fragment in message, message
    assert not any(secret in message for secret in SECRETS), message
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)
    assert error.path == str(path)


def test_a_missing_or_unreadable_file_is_refused(tmp_path: Path) -> None:
    """No file, or a folder in its place: one line naming the path."""
    missing = tmp_path / "apps.toml"
    assert str(_refusal(missing)) == f"{missing}: cannot read: No such file or directory"
    assert str(_refusal(tmp_path)) == f"{tmp_path}: cannot read: Is a directory"


def test_invalid_toml_says_where(tmp_path: Path) -> None:
    """tomllib's line and column come through, on one line."""
    path = _write(tmp_path, A_OK + "qps = \n")
    assert "(at line 4, column 7)" in str(_refusal(path))


def test_the_refusal_carries_its_data(tmp_path: Path) -> None:
    """The error holds the file, the app (id, position), the key and the problem apart."""
    path = _write(tmp_path, A_OK + '[[app]]\nid = "tt_b"\nclient_secret_env = "NOPE"\n')
    error = _refusal(path)
    assert (error.path, error.app, error.position, error.key) == (
        str(path),
        "tt_b",
        2,
        "client_secret_env",
    )
    assert error.problem == "environment variable NOPE is not set"
    assert str(error) == f'{path}: app "tt_b" (#2): client_secret_env: {error.problem}'


# -- what loads ----------------------------------------------------------------------------------


def test_an_app_with_only_id_and_secret_takes_the_defaults(tmp_path: Path) -> None:
    """client_credentials, the id as client key and as the talents' app id, no qps, no name."""
    apps = load_apps_file(_write(tmp_path, A_OK), ENV).apps
    assert apps == (
        AppConfig(
            id="tt_a",
            auth=Auth.CLIENT_CREDENTIALS,
            client_key="tt_a",
            client_secret=Secret("s3cr3t-env-ONE"),
            talents_app_id="tt_a",
        ),
    )


def test_every_key_loads(tmp_path: Path) -> None:
    """A full client_credentials app and an access_token app, in the file's order."""
    content = (
        '[[app]]\nid = "tt_sbx_app_0001"\nclient_key = "sbx_client_key_0001"\n'
        'client_secret_file = "{dir}/good"\napp_secret_env = "APP1_APP_SECRET"\n'
        'name = " Shop A "\nqps = 5\n\n'
        '[[app]]\nid = "tt_other"\nauth = "access_token"\naccess_token_env = "TOKEN"\n'
        'app_secret_file = "{dir}/good"\nqps = 2.5\n'
    )
    first, second = load_apps_file(_write(tmp_path, content), ENV).apps
    assert first == AppConfig(
        id="tt_sbx_app_0001",
        name="Shop A",
        auth=Auth.CLIENT_CREDENTIALS,
        client_key="sbx_client_key_0001",
        client_secret=Secret(FILE_SECRET),
        app_secret=Secret("s3cr3t-app-TWO"),
        qps=5.0,
        talents_app_id="tt_sbx_app_0001",
    )
    assert second == AppConfig(
        id="tt_other",
        auth=Auth.ACCESS_TOKEN,
        client_key="tt_other",
        access_token=Secret("s3cr3t-token-THREE"),
        app_secret=Secret(FILE_SECRET),
        qps=2.5,
        talents_app_id="tt_other",
    )
    assert isinstance(first.qps, float)


def test_a_secret_file_loses_its_trailing_newline_and_may_be_relative(tmp_path: Path) -> None:
    """A Kubernetes-style mount ends in a newline: stripped; a relative path is taken from the
    apps file's folder, not from the working directory."""
    path = _write(tmp_path, A + 'client_secret_file = "../secrets/good"\n')
    (app,) = load_apps_file(path, {}).apps
    assert app.client_secret == Secret(FILE_SECRET)


def test_environment_values_are_stripped_and_read_from_os_environ_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without an explicit mapping the process environment is read; surrounding blanks go."""
    monkeypatch.setenv("TASKBOX_TEST_APPS_SECRET", "  s3cr3t-env-ONE\n")
    path = _write(tmp_path, A + 'client_secret_env = "TASKBOX_TEST_APPS_SECRET"\n')
    (app,) = load_apps_file(path).apps
    assert app.client_secret == Secret("s3cr3t-env-ONE")


def test_a_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    """A file saved by an editor that writes a BOM still loads."""
    path = _write(tmp_path, b"\xef\xbb\xbf" + A_OK.encode())
    assert load_apps_file(path, ENV).apps[0].id == "tt_a"


def test_every_auth_has_its_keys_and_needs_one_secret() -> None:
    """The per-auth table covers every Auth; each auth that takes a secret from the file
    requires exactly one (a token command's program holds its own)."""
    assert set(AUTH_KEYS) == set(Auth)
    for auth, keys in AUTH_KEYS.items():
        takes_none = auth in (Auth.TOKEN_COMMAND, Auth.PROVIDER)  # a program's, the provider's
        assert len(keys.required) == (0 if takes_none else 1)
        assert {"id", "name", "auth", "qps"} <= keys.allowed


# -- select --------------------------------------------------------------------------------------


def _apps(tmp_path: Path, *ids: str) -> AppsFile:
    content = "".join(f'[[app]]\nid = "{i}"\nclient_secret_env = "APP1_SECRET"\n' for i in ids)
    return load_apps_file(_write(tmp_path, content), ENV)


def test_select_keeps_the_files_order_and_no_ids_means_all(tmp_path: Path) -> None:
    """Apps come in the file's order whatever the order asked; an id asked twice comes once."""
    apps = _apps(tmp_path, "tt_a", "tt_b", "tt_c")
    assert [a.id for a in apps.select([])] == ["tt_a", "tt_b", "tt_c"]
    assert [a.id for a in apps.select(["tt_c", "tt_a", "tt_c"])] == ["tt_a", "tt_c"]
    assert [a.id for a in apps.select("tt_b")] == ["tt_b"]  # a lone string is one id


def test_select_refuses_an_unknown_id_naming_file_and_known_ids(tmp_path: Path) -> None:
    """An id not in the file: one line naming the file, the id and (briefly) the known ids."""
    apps = _apps(tmp_path, *(f"tt_{n}" for n in range(8)))
    with pytest.raises(AppsFileError) as info:
        apps.select(["tt_1", "tt_x"])
    assert str(info.value) == (
        f'{apps.path}: app "tt_x": not in the file; '
        "its apps: tt_0, tt_1, tt_2, tt_3, tt_4, tt_5, … (8 in all)"
    )


# -- settings ------------------------------------------------------------------------------------

BASE_ENV = {
    "DATABASE_URL": "postgresql://u:dbpassw0rd@db.example:5432/x",
    "DOUYIN_CLIENT_KEY": "env_key",
    "DOUYIN_CLIENT_SECRET": "s3cr3t-env-client",
    "DOUYIN_APP_ID": "tt_env",
    "DOUYIN_APP_SECRET": "s3cr3t-env-app",
    "DOUYIN_OPEN_BASE_URL": "http://127.0.0.1:8080",
    "TASKBOX_QPS": "8",
    "TASKBOX_DATA_DIR": "/var/lib/taskbox",
}


def test_settings_for_lays_the_apps_credentials_over_the_base(tmp_path: Path) -> None:
    """Key, secret, token, talents app id and secret become the app's (none borrowed from the
    environment's DOUYIN_*); qps only if the app sets one; the rest stays the base's."""
    base = Settings.from_env(BASE_ENV)
    content = A_OK + "qps = 3\n" + T + 'access_token_env = "TOKEN"\n'
    first, second = load_apps_file(_write(tmp_path, content), ENV).apps
    one, two = settings_for(base, first), settings_for(base, second)
    assert (one.client_key, one.client_secret, one.access_token) == (
        "tt_a",
        Secret("s3cr3t-env-ONE"),
        None,
    )
    assert (one.app_id, one.app_secret, one.qps) == ("tt_a", None, 3.0)
    assert (one.app, one.recorded_app, two.app, two.recorded_app) == ("tt_a",) * 2 + ("tt_t",) * 2
    assert (two.client_secret, two.access_token) == (None, Secret("s3cr3t-token-THREE"))
    assert (two.app_id, two.qps) == ("tt_t", 8.0)
    for derived in (one, two):
        assert derived.database_url == base.database_url
        assert derived.open_base_url == "http://127.0.0.1:8080"
        assert derived.developer_base_url == base.developer_base_url
        assert derived.data_dir == Path("/var/lib/taskbox")
        derived.require_daily_data_credentials()


@pytest.mark.parametrize(
    ("env", "app_id", "auth"),
    [
        (BASE_ENV, "env_key", Auth.CLIENT_CREDENTIALS),
        ({"DOUYIN_ACCESS_TOKEN": "s3cr3t-env-token"}, "access-token", Auth.ACCESS_TOKEN),
        ({**BASE_ENV, "DOUYIN_ACCESS_TOKEN": "s3cr3t-env-token"}, "env_key", Auth.ACCESS_TOKEN),
        (
            {"DOUYIN_APP_ID": "tt_env", "DOUYIN_APP_SECRET": "x"},
            "tt_env",
            Auth.CLIENT_CREDENTIALS,
        ),
        ({}, "access-token", Auth.CLIENT_CREDENTIALS),
    ],
    ids=["key-and-secret", "token-only", "both", "talents-only", "nothing"],
)
def test_the_environments_app_gives_back_the_same_settings(
    env: dict[str, str], app_id: str, auth: Auth
) -> None:
    """The environment's one app has the id runs record today (the client key, else the
    mini-app id, else "access-token"), and laying it over its own settings changes nothing but
    naming that id."""
    settings = Settings.from_env(env)
    app = app_from_settings(settings)
    assert (app.id, app.auth) == (app_id, auth)
    assert app.talents_app_id == settings.app_id
    assert settings_for(settings, app) == settings.replace(app=app_id)
    assert settings_for(settings, app).recorded_app == settings.recorded_app == app_id


def test_secrets_of_apps_lists_every_secret_value(tmp_path: Path) -> None:
    """The scrubber gets each loaded secret: client secrets, tokens, app secrets."""
    content = (
        A_OK + 'app_secret_env = "APP1_APP_SECRET"\n' + T + 'access_token_file = "{dir}/good"\n'
    )
    apps = load_apps_file(_write(tmp_path, content), ENV).apps
    assert secrets_of_apps(apps) == ["s3cr3t-env-ONE", "s3cr3t-app-TWO", FILE_SECRET]


def test_no_repr_shows_a_secret(tmp_path: Path) -> None:
    """The file, its apps and the settings made from them print every secret masked."""
    content = (
        A_OK + 'app_secret_env = "APP1_APP_SECRET"\n' + T + 'access_token_file = "{dir}/good"\n'
    )
    loaded = load_apps_file(_write(tmp_path, content), ENV)
    shown = repr(loaded) + str(loaded) + "".join(repr(a) + str(a) for a in loaded.apps)
    shown += "".join(repr(settings_for(Settings(), a)) for a in loaded.apps)
    assert "tt_a" in shown and "Secret('**********')" in shown
    assert not any(secret in shown for secret in SECRETS)


def test_the_module_imports_only_the_standard_library_errors_and_settings() -> None:
    """sync.apps is shared: it depends on no layer of the data path, nor on any third party."""
    tree = ast.parse(Path(sync.apps.__file__).read_text(encoding="utf-8"))
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    outside = {
        name
        for name in imported
        if name.split(".")[0] not in sys.stdlib_module_names
        and name not in ("sync", "sync.errors", "sync.settings", "sync.toml_values")
    }
    assert not outside, outside


# -- provider mode ------------------------------------------------------------------------------


def test_a_provider_table_reaches_its_apps_and_their_settings(tmp_path: Path) -> None:
    """[provider] loads its secret now and keeps the ticket's file to read when a token is
    needed; an app with auth = "provider" carries it (other apps do not) and so do its
    settings, with the app's agency filter."""
    content = (
        PROVIDER + '[[app]]\nid = "tt_m"\nauth = "provider"\nagency_client_key = "ag1"\n' + A_OK
    )
    path = _write(tmp_path, content)
    apps = load_apps_file(path, ENV)
    merchant, plain = apps.apps
    provider = apps.provider
    assert provider is not None and merchant.provider == provider and plain.provider is None
    assert provider.component_appid == "tt_comp"
    assert provider.component_secret.reveal() == ENV["APP1_SECRET"]
    assert provider.ticket_file == path.parent / "ticket" and provider.ticket is None
    assert merchant.auth is Auth.PROVIDER and merchant.agency_client_key == "ag1"
    settings = settings_for(Settings(), merchant)
    assert settings.provider == provider and settings.agency_client_key == "ag1"
    assert settings.recorded_app == "tt_m" and settings.app_id == "tt_m"
    settings.require_daily_data_credentials()  # the provider is its credential
    assert ENV["APP1_SECRET"] in secrets_of_apps([merchant])
    assert ENV["APP1_SECRET"] not in repr(apps)


def test_a_provider_ticket_from_a_command_or_the_environment(tmp_path: Path) -> None:
    """The ticket may come from a program (argv, no shell) or a variable (loaded now)."""
    head = P_HEAD + 'component_secret_env = "APP1_SECRET"\n'
    by_command = head + 'component_ticket_command = ["tickets", "--now"]\nticket_timeout = 5\n'
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    provider = load_apps_file(_write(tmp_path / "a", by_command + A_OK), ENV).provider
    assert provider is not None and provider.ticket_command == ("tickets", "--now")
    assert provider.ticket_timeout == 5
    by_env = head + 'component_ticket_env = "TOKEN"\n'
    provider = load_apps_file(_write(tmp_path / "b", by_env + A_OK), ENV).provider
    assert provider is not None and provider.ticket == Secret(ENV["TOKEN"])
