"""Settings: defaults, the file < env < flags layering, validation messages, masking."""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from pathlib import Path

import pytest

from taskd.config import ENV_NAMES, Settings, as_dict, load, mask_url
from taskd.errors import ConfigError
from taskd.log import MASK

REPO_TOML = Path(__file__).resolve().parent.parent / "taskd.toml"
HOME = {"HOME": "/home/ada"}
DEFAULTS = Settings(data_dir=Path("/home/ada/.local/share/taskd"))


def sections() -> dict[str, set[str]]:
    """Each settings section with its field names, read off the dataclasses."""
    result = {}
    for top in dataclasses.fields(Settings):
        value = getattr(DEFAULTS, top.name)
        if dataclasses.is_dataclass(value):
            result[top.name] = {f.name for f in dataclasses.fields(value)}
    return result


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "taskd.toml"
    path.write_text(text)
    return path


def config_error(
    path: Path | None = None,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, object] | None = None,
) -> str:
    """Load, expect a ConfigError, check that its message is one line and return it."""
    with pytest.raises(ConfigError) as info:
        load(path, {**HOME, **(env or {})}, flags or {})
    message = str(info.value)
    assert "\n" not in message
    return message


def test_defaults_without_any_source() -> None:
    """With no file, env or flags, every setting has its documented default."""
    settings = load(None, HOME, {})
    assert settings == DEFAULTS
    assert settings.server.port == 8000
    assert settings.workers.queues == ("default",)
    assert settings.files_root == DEFAULTS.data_dir / "files"


def test_data_dir_follows_xdg_data_home() -> None:
    """The default data_dir lives under an absolute XDG_DATA_HOME when it is set."""
    settings = load(None, {**HOME, "XDG_DATA_HOME": "/xdg"}, {})
    assert settings.data_dir == Path("/xdg/taskd")


def test_data_dir_expands_tilde_with_home_from_env() -> None:
    """A data_dir starting with ~ is expanded with HOME from the env mapping."""
    settings = load(None, {**HOME, "TASKD_DATA_DIR": "~/state"}, {})
    assert settings.data_dir == Path("/home/ada/state")


def test_settings_are_frozen() -> None:
    """Settings cannot be changed after loading."""
    settings = load(None, HOME, {})
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.server.port = 1  # type: ignore[misc]


def test_repo_toml_equals_defaults() -> None:
    """Loading the shipped taskd.toml gives exactly the defaults."""
    assert load(REPO_TOML, HOME, {}) == DEFAULTS


def test_repo_toml_documents_every_setting() -> None:
    """The shipped taskd.toml names every setting of every section, and data_dir."""
    text = REPO_TOML.read_text()
    document = tomllib.loads(text)
    assert {name: set(table) for name, table in document.items()} == sections()
    assert "\n# data_dir = " in text


def test_file_overrides_defaults(tmp_path: Path) -> None:
    """Values in the TOML file replace the defaults, with TOML types converted."""
    path = write(
        tmp_path,
        'data_dir = "/srv/taskd"\n[server]\nport = 9000\n[workers]\nhandlers = ["a.b"]\n'
        "[tasks]\ntimeout_s = 5\n",
    )
    settings = load(path, HOME, {})
    assert settings.server.port == 9000
    assert settings.workers.handlers == ("a.b",)
    assert settings.tasks.timeout_s == 5.0
    assert isinstance(settings.tasks.timeout_s, float)
    assert settings.data_dir == Path("/srv/taskd")


def test_taskd_config_env_names_the_file(tmp_path: Path) -> None:
    """Without a path argument, TASKD_CONFIG names the file to read."""
    path = write(tmp_path, "[server]\nport = 9001\n")
    assert load(None, {**HOME, "TASKD_CONFIG": str(path)}, {}).server.port == 9001


def test_missing_named_file_is_an_error(tmp_path: Path) -> None:
    """A config file that was named but does not exist stops loading."""
    message = config_error(tmp_path / "nope.toml")
    assert "nope.toml" in message
    assert "not found" in message


def test_invalid_toml_is_an_error(tmp_path: Path) -> None:
    """A syntax error in the file is reported as a ConfigError naming the file."""
    message = config_error(write(tmp_path, "[server\nport = 1\n"))
    assert "invalid TOML" in message


def test_env_overrides_file(tmp_path: Path) -> None:
    """An environment variable wins over the file."""
    path = write(tmp_path, "[server]\nport = 9000\n")
    assert load(path, {**HOME, "TASKD_PORT": "9100"}, {}).server.port == 9100


def test_flags_override_env() -> None:
    """A flag wins over the environment; flags set to None are ignored."""
    env = {**HOME, "TASKD_PORT": "9100", "TASKD_WORKERS": "3"}
    settings = load(None, env, {"server.port": 8080, "workers.count": None})
    assert settings.server.port == 8080
    assert settings.workers.count == 3


def test_flags_of_every_kind() -> None:
    """Flags take typed values for any setting, including lists and data_dir."""
    flags: dict[str, object] = {
        "workers.handlers": ("a", "b"),
        "log.format": "json",
        "redis.url": "redis://h:1/0",
        "data_dir": "/x",
    }
    settings = load(None, HOME, flags)
    assert settings.workers.handlers == ("a", "b")
    assert settings.log.format == "json"
    assert settings.redis.url == "redis://h:1/0"
    assert settings.data_dir == Path("/x")


@pytest.mark.parametrize(
    ("name", "value", "key", "expected"),
    [
        ("APP_HOST", "0.0.0.0", "server.host", "0.0.0.0"),
        ("APP_PORT", "8123", "server.port", 8123),
        ("WORKERS", "16", "workers.count", 16),
        ("MAX_RETRIES", "7", "tasks.max_retries", 7),
        ("TASK_TIMEOUT", "12.5", "tasks.timeout_s", 12.5),
        ("REDIS_URL", "redis://r:6380/2", "redis.url", "redis://r:6380/2"),
    ],
)
def test_seed_env_names(name: str, value: str, key: str, expected: object) -> None:
    """The seed's environment names still configure their settings."""
    settings = load(None, {**HOME, name: value}, {})
    section, field = key.split(".")
    assert getattr(getattr(settings, section), field) == expected


def test_taskd_names_win_over_seed_names() -> None:
    """When both are set, the TASKD_ name wins over the seed's name."""
    settings = load(None, {**HOME, "TASKD_PORT": "1111", "APP_PORT": "2222"}, {})
    assert settings.server.port == 1111


def test_env_table_names_only_real_settings() -> None:
    """Every key of the environment table is a setting load() accepts."""
    known = {f"{name}.{field}" for name, fields in sections().items() for field in fields}
    assert set(ENV_NAMES) <= known | {"data_dir"}


def test_env_values_are_parsed() -> None:
    """Env strings become bools, floats and comma-separated lists; empty ones are unset."""
    env = {
        **HOME,
        "TASKD_ALLOW_ANONYMOUS": "yes",
        "TASKD_LEASE_S": "2.5",
        "TASKD_HANDLERS": "a.jobs, b.jobs,",
        "TASKD_QUEUES": "high,low",
        "TASKD_LOG_LEVEL": "DEBUG",
        "TASKD_HOST": "",
    }
    settings = load(None, env, {})
    assert settings.auth.allow_anonymous is True
    assert settings.tasks.lease_s == 2.5
    assert settings.workers.handlers == ("a.jobs", "b.jobs")
    assert settings.workers.queues == ("high", "low")
    assert settings.log.level == "debug"
    assert settings.server.host == "127.0.0.1"


def test_redis_parts_build_a_url() -> None:
    """REDIS_HOST/PORT/DB/PASSWORD build redis.url, with the password URL-quoted."""
    parts = {
        "REDIS_HOST": "cache",
        "REDIS_PORT": "6380",
        "REDIS_DB": "3",
        "REDIS_PASSWORD": "p@ss/word",
    }
    env = {**HOME, **parts}
    assert load(None, env, {}).redis.url == "redis://:p%40ss%2Fword@cache:6380/3"


def test_redis_parts_default_the_rest() -> None:
    """A lone REDIS_PASSWORD gets localhost, port 6379 and db 0."""
    settings = load(None, {**HOME, "REDIS_PASSWORD": "pw"}, {})
    assert settings.redis.url == "redis://:pw@localhost:6379/0"


def test_redis_url_env_wins_over_parts() -> None:
    """REDIS_URL is used as given even when REDIS_HOST is also set."""
    settings = load(None, {**HOME, "REDIS_URL": "redis://a:1/0", "REDIS_HOST": "b"}, {})
    assert settings.redis.url == "redis://a:1/0"


def test_bad_redis_port_part() -> None:
    """A non-numeric REDIS_PORT is reported against redis.url, naming the variable."""
    message = config_error(env={"REDIS_PORT": "x"})
    assert (
        message
        == "config: redis.url: expected an integer from 1 to 65535, got 'x' (from env REDIS_PORT)"
    )


def test_port_out_of_range() -> None:
    """Port 70000 is refused with the key, the range and the bad value."""
    message = config_error(env={"TASKD_PORT": "70000"})
    assert message == (
        "config: server.port: expected an integer from 1 to 65535, got '70000'"
        " (from env TASKD_PORT)"
    )


def test_workers_not_a_number() -> None:
    """WORKERS=abc is refused with the key, the expected type and the value."""
    message = config_error(env={"WORKERS": "abc"})
    assert message.startswith("config: workers.count: expected an integer from 0 to 10000")
    assert "'abc'" in message


def test_unknown_key_in_file(tmp_path: Path) -> None:
    """An unknown key in the file is named, with the closest real key as a hint."""
    message = config_error(write(tmp_path, "[server]\nprot = 80\n"))
    assert message.startswith("config: server.prot: unknown setting")
    assert "did you mean server.port?" in message


def test_unknown_section_in_file(tmp_path: Path) -> None:
    """An unknown top-level key or section in the file is refused."""
    message = config_error(write(tmp_path, "[sever]\nport = 80\n"))
    assert message.startswith("config: sever: unknown setting")
    assert "did you mean server?" in message


def test_wrong_type_in_file(tmp_path: Path) -> None:
    """A TOML string where an integer belongs is refused; the file is not parsed like env."""
    message = config_error(write(tmp_path, '[server]\nport = "8000"\n'))
    assert message.startswith("config: server.port: expected an integer")
    assert "taskd.toml" in message


def test_bool_is_not_an_integer(tmp_path: Path) -> None:
    """TOML true is not accepted as a number."""
    message = config_error(write(tmp_path, "[workers]\ncount = true\n"))
    assert message.startswith("config: workers.count: expected an integer")


@pytest.mark.parametrize(
    ("flag", "value", "fragment"),
    [
        ("log.format", "xml", "expected one of auto, console, json"),
        ("tasks.lease_s", 0, "expected a number > 0"),
        ("tasks.timeout_s", "nan", "expected a number > 0"),
        ("workers.queues", ("ok", "bad name"), "expected queue names"),
        ("workers.queues", (), "needs at least one queue"),
        ("workers.handlers", ("my-app.jobs",), "dotted module names"),
        ("server.allowed_origins", ("https://x.org/",), "without a path"),
        ("redis.url", "localhost:6379", "expected a URL starting with redis://"),
        ("auth.allow_anonymous", "maybe", "expected a boolean"),
    ],
)
def test_bad_values_name_the_key(flag: str, value: object, fragment: str) -> None:
    """Each invalid value raises a one-line ConfigError naming the key and the problem."""
    message = config_error(flags={flag: value})
    assert message.startswith(f"config: {flag}: ")
    assert fragment in message


def test_secrets_are_not_echoed_in_errors(tmp_path: Path) -> None:
    """A badly typed secret is reported without showing its value."""
    message = config_error(write(tmp_path, '[auth]\ntokens = "s3cret"\n'))
    assert "s3cret" not in message
    assert "<hidden>" in message


def test_bad_redis_url_error_masks_password() -> None:
    """An invalid redis URL is shown with its password masked."""
    message = config_error(env={"TASKD_REDIS_URL": "http://:s3cret@h:1/0"})
    assert "s3cret" not in message
    assert "***" in message


def test_backoff_max_below_base() -> None:
    """backoff_max_s smaller than backoff_base_s is refused."""
    message = config_error(flags={"tasks.backoff_base_s": 10.0, "tasks.backoff_max_s": 5.0})
    assert message.startswith("config: tasks.backoff_max_s: must be >= tasks.backoff_base_s")


def test_implicit_tls_excludes_starttls() -> None:
    """use_tls together with starttls is refused with the fix in the message."""
    assert "starttls = false" in config_error(flags={"email.use_tls": True})
    assert load(None, HOME, {"email.use_tls": True, "email.starttls": False}).email.use_tls


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://:pw@h:6379/0", "redis://:***@h:6379/0"),
        ("redis://user:pw@h:6379/2", "redis://user:***@h:6379/2"),
        ("rediss://user:p@ss@h:6380/0", "rediss://user:***@h:6380/0"),
        ("unix://:pw@/run/redis.sock?db=1", "unix://:***@/run/redis.sock?db=1"),
        ("unix:///run/redis.sock?db=1&password=pw", "unix:///run/redis.sock?db=1&password=***"),
        (
            "redis+sentinel://:pw@s1:26379,s2:26379,s3:26379/mymaster/0",
            "redis+sentinel://:***@s1:26379,s2:26379,s3:26379/mymaster/0",
        ),
        ("redis://:a@s1:26379,redis://:b@s2:26379", "redis://:***@s1:26379,redis://:***@s2:26379"),
        ("redis://user@h:6379/0", "redis://user@h:6379/0"),
        ("redis://h:6379/0", "redis://h:6379/0"),
        ("", ""),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    """mask_url hides only the password, keeping scheme, user, hosts, port and db."""
    assert mask_url(url) == masked


def test_as_dict_masks_secrets() -> None:
    """as_dict is plain data with the SMTP password, tokens and URL password masked."""
    flags: dict[str, object] = {
        "email.smtp_password": "mail-pw",
        "auth.tokens": ("t1", "t2"),
        "auth.read_tokens": ("r1",),
        "redis.url": "redis://:redis-pw@h:6379/0",
    }
    data = as_dict(load(None, HOME, flags))
    text = repr(data)
    for secret in ("mail-pw", "t1", "t2", "r1", "redis-pw"):
        assert secret not in text
    assert data["auth"]["tokens"] == ["***", "***"]
    assert data["email"]["smtp_password"] == MASK
    assert data["redis"]["url"] == "redis://:***@h:6379/0"
    assert data["server"]["port"] == 8000
    assert data["data_dir"] == "/home/ada/.local/share/taskd"


def test_a_schedule_whose_cron_never_matches_is_refused(tmp_path: Path) -> None:
    """A [[schedule]] cron that no date can match (February 31st) stops startup with one
    line naming it, instead of a daemon whose scheduler fails at its first check."""
    path = write(
        tmp_path,
        '[[schedule]]\nname = "feb31"\ncron = "0 0 31 2 *"\ntask_type = "email"\n',
    )
    message = config_error(path)
    assert message.startswith("config: schedule[0].cron: expression never matches")


@pytest.mark.parametrize("every", ["inf", "nan"])
def test_a_schedule_every_s_that_is_not_finite_is_refused(tmp_path: Path, every: str) -> None:
    """TOML's inf and nan are floats but no interval: every_s = inf or nan stops startup
    with one line naming the key, not a traceback from the scheduler's first check."""
    path = write(
        tmp_path,
        f'[[schedule]]\nname = "x"\nevery_s = {every}\ntask_type = "email"\n',
    )
    message = config_error(path)
    assert message.startswith("config: schedule[0].every_s: must be a number of seconds >= 1")
