"""taskbox-sync: mirror Douyin taskbox daily video earnings into PostgreSQL, exactly.

The package's public names; the work lives in the modules named for what they hold.
"""

from sync.errors import (
    ApiError,
    ContractError,
    ErrorClass,
    PermanentError,
    SettingsError,
    TaskboxError,
    ThrottledError,
    TokenError,
    TransportError,
)
from sync.settings import Secret, Settings

__all__ = [
    "ApiError",
    "ContractError",
    "ErrorClass",
    "PermanentError",
    "Secret",
    "Settings",
    "SettingsError",
    "TaskboxError",
    "ThrottledError",
    "TokenError",
    "TransportError",
]
