"""taskbox-sync: mirror Douyin taskbox daily video earnings into PostgreSQL, exactly.

The package's public names; the work lives in the modules named for what they hold.
"""

from importlib import metadata as _metadata

from sync.errors import (
    ApiError,
    ContractError,
    FatalError,
    PermanentError,
    RetryableError,
    SettingsError,
    TaskboxError,
    ThrottledError,
    TokenError,
    TransportError,
)
from sync.settings import Secret, Settings

try:  # the installed distribution's version (`pip install`, editable or not)
    __version__ = _metadata.version("taskbox-sync")
except _metadata.PackageNotFoundError:  # a checkout used without installing it
    __version__ = "0+unknown"

__all__ = [
    "ApiError",
    "ContractError",
    "FatalError",
    "PermanentError",
    "RetryableError",
    "Secret",
    "Settings",
    "SettingsError",
    "TaskboxError",
    "ThrottledError",
    "TokenError",
    "TransportError",
    "__version__",
]
