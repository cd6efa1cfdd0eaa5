"""One frozen, validated settings object, from a TOML file, the environment and CLI flags.

Later sources win: defaults < ``taskd.toml`` < environment < flags. Every value is checked
once, at load, so the rest of taskd can trust :class:`Settings`.
"""

from taskd.config.load import ENV_NAMES, as_dict, load
from taskd.config.settings import (
    ApiCallSettings,
    AuthSettings,
    EmailSettings,
    FileSettings,
    LogSettings,
    RedisSettings,
    ServerSettings,
    Settings,
    TaskSettings,
    WorkerSettings,
)
from taskd.log import mask_url

__all__ = [
    "ENV_NAMES",
    "ApiCallSettings",
    "AuthSettings",
    "EmailSettings",
    "FileSettings",
    "LogSettings",
    "RedisSettings",
    "ServerSettings",
    "Settings",
    "TaskSettings",
    "WorkerSettings",
    "as_dict",
    "load",
    "mask_url",
]
