"""Frozen settings of one sandbox: its apps, their dataset size, credentials (the apps' and its
service provider's), limits and faults."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any

Clock = Callable[[], float]
"""Returns "now" as epoch seconds; every time-dependent rule reads it (tests pass a fake)."""


@dataclass(frozen=True)
class Faults:
    """What goes wrong, and how often. Everything is off by default.

    Rates are probabilities per request in [0, 1]. Decisions come from a `random.Random(seed)`
    owned by the sandbox, so the same request sequence meets the same faults.
    """

    seed: int = 0
    busy_rate: float = 0.0
    """err_no 28001005 (system busy, retry)."""
    network_error_rate: float = 0.0
    """err_no 28001006 (network call error, retry)."""
    http_5xx_rate: float = 0.0
    """HTTP 502 or 503 with an HTML body."""
    latency_min: float = 0.0
    latency_max: float = 0.0
    """Added latency, uniform in [latency_min, latency_max] seconds."""
    hang_rate: float = 0.0
    hang_seconds: float = 30.0
    """A hang sleeps this long before answering (longer than a client's timeout)."""
    malformed_rate: float = 0.0
    """A body that is truncated or otherwise not JSON."""
    wrong_shape_rate: float = 0.0
    """Valid JSON that is not the documented shape."""
    reset_rate: float = 0.0
    """Connection reset (the transport is aborted with RST)."""
    throttle_storm_until: float | None = None
    """Every daily-data request answers 28003018 until this clock time."""
    token_lifetime: float | None = None
    """When set, tokens issued from now on live this many seconds (overrides the config)."""
    apply_to_talents: bool = False
    """Also inject faults into the talents/task-info endpoints (busy maps to 4001010 there)."""

    def __post_init__(self) -> None:
        for name in (
            "busy_rate",
            "network_error_rate",
            "http_5xx_rate",
            "hang_rate",
            "malformed_rate",
            "wrong_shape_rate",
            "reset_rate",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {value}")
        if self.latency_min < 0 or self.latency_max < self.latency_min:
            raise ValueError("latency must satisfy 0 <= latency_min <= latency_max")
        if self.hang_seconds < 0:
            raise ValueError("hang_seconds must be >= 0")
        if self.token_lifetime is not None and self.token_lifetime <= 0:
            raise ValueError("token_lifetime must be > 0")

    @classmethod
    def from_mapping(cls, data: dict[str, Any], *, now: float) -> Faults:
        """Build from a JSON object (the /__sandbox/faults body); unknown keys are errors.

        Besides the field names it accepts `throttle_storm_seconds` (storm until now + N) and
        `latency` as `[min, max]`.
        """
        known = {f.name for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key == "throttle_storm_seconds":
                kwargs["throttle_storm_until"] = now + _number(key, value)
            elif key == "latency":
                if not isinstance(value, list) or len(value) != 2:
                    raise ValueError("latency must be [min, max]")
                kwargs["latency_min"] = _number(key, value[0])
                kwargs["latency_max"] = _number(key, value[1])
            elif key in ("seed",):
                if not isinstance(value, int) or isinstance(value, bool):
                    raise ValueError("seed must be an integer")
                kwargs[key] = value
            elif key == "apply_to_talents":
                if not isinstance(value, bool):
                    raise ValueError("apply_to_talents must be a boolean")
                kwargs[key] = value
            elif key in ("throttle_storm_until", "token_lifetime"):
                kwargs[key] = None if value is None else _number(key, value)
            elif key in known:
                kwargs[key] = _number(key, value)
            elif key == "revoke_tokens":
                continue  # an action, handled by the caller
            else:
                raise ValueError(f"unknown fault {key!r}")
        return cls(**kwargs)

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _number(key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key} must be a number")
    return float(value)


_SPEC_KEYS = {
    "seed": "seed",
    "busy": "busy_rate",
    "network": "network_error_rate",
    "5xx": "http_5xx_rate",
    "hang": "hang_rate",
    "hang_seconds": "hang_seconds",
    "malformed": "malformed_rate",
    "shape": "wrong_shape_rate",
    "reset": "reset_rate",
    "token_lifetime": "token_lifetime",
    "talents": "apply_to_talents",
}


def parse_faults_spec(spec: str, *, now: float, base: Faults | None = None) -> Faults:
    """Parse the CLI form: comma-separated `key=value`, e.g. `busy=0.05,5xx=0.01,hang=0.01@30`.

    Keys: seed, busy, network, 5xx, hang (rate, optionally `@seconds`), hang_seconds, malformed,
    shape, reset, latency (`MIN:MAX`), storm (seconds from now), token_lifetime, talents (0/1),
    or any `Faults` field name.
    """
    result = base or Faults()
    names = {f.name for f in fields(Faults)}
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        key = key.strip()
        value = value.strip()
        if not sep or not value:
            raise ValueError(f"fault {item!r} is not key=value")
        try:
            if key == "latency":
                low, high = parse_latency(value)
                result = replace(result, latency_min=low, latency_max=high)
            elif key == "storm":
                result = replace(result, throttle_storm_until=now + float(value))
            elif key == "hang" and "@" in value:
                rate, _, seconds = value.partition("@")
                result = replace(result, hang_rate=float(rate), hang_seconds=float(seconds))
            else:
                name = _SPEC_KEYS.get(key, key)
                if name not in names:
                    raise ValueError(f"unknown fault {key!r}")
                parsed: Any
                if name == "seed":
                    parsed = int(value)
                elif name == "apply_to_talents":
                    parsed = value.lower() in ("1", "true", "yes", "on")
                else:
                    parsed = float(value)
                result = replace(result, **{name: parsed})
        except ValueError as exc:
            raise ValueError(f"bad fault {item!r}: {exc}") from None
    return result


def parse_latency(value: str) -> tuple[float, float]:
    """Parse `MIN:MAX` (or a single number) into seconds."""
    low_text, sep, high_text = value.partition(":")
    low = float(low_text)
    high = float(high_text) if sep else low
    if low < 0 or high < low:
        raise ValueError("latency must be MIN:MAX with 0 <= MIN <= MAX")
    return low, high


MAX_APPS = 0xFFFF
"""Tokens carry their app's number in four hex digits."""


@dataclass(frozen=True)
class SandboxConfig:
    """Everything a sandbox needs; the same config always yields the same dataset."""

    seed: int = 1
    apps: int = 1
    """How many apps it serves, each with its own credentials, data, tokens and throttles
    (see `credentials.app_credentials`); app 1 takes the credential fields below."""
    videos: int = 200
    """Videos of each app."""
    tasks: int = 12
    creators: int = 40
    history_days: int = 120
    """Videos are published over this many days before the dataset's creation."""
    client_key: str = "sbx_client_key_0001"
    client_secret: str = "sbx_client_secret_0001"  # noqa: S105 (a fake for the sandbox)
    app_id: str = "tt_sbx_app_0001"
    app_secret: str = "sbx_app_secret_0001"  # noqa: S105
    token_lifetime: float = 7200.0
    token_grace: float = 300.0
    """A superseded token stays valid this long (capped by its own expiry)."""
    token_rate_limit: int = 500
    token_rate_window: float = 300.0
    qps_limit: int = 10
    """Daily-data requests allowed in any sliding second."""
    capability: bool = True
    """Whether app 1 holds the data-analysis capability (else 28001018)."""
    apps_without_capability: frozenset[int] = frozenset()
    """1-based numbers of the apps lacking that capability too (app 1 lacks it when either says
    so)."""
    snake_case: bool = False
    """Send row keys in snake_case instead of the doc sample's PascalCase."""
    talent_comma: str = ","
    """Comma used in update_result texts: "," (ASCII) or "，" (full width)."""
    cache_dates: int = 256
    """How many billing dates keep their rendered rows in memory, counted across apps (an app's
    date is one): the least recently used go."""
    component_appid: str = "tt_sbx_component"
    """The service provider's (服务商's) component app id: one provider per sandbox."""
    component_appsecret: str = ""
    """Its secret; empty: derived from the seed (see `credentials.provider_credentials`)."""
    component_token_lifetime: float = 3600.0
    ticket_period: float = 600.0
    """The component ticket rotates this often (the platform pushes one every 10 minutes);
    the current and the previous one are accepted."""
    refresh_lifetime: float = 30 * 86400.0
    """An authorizer refresh token's life when unused."""
    refresh_grace: float = 60.0
    """A used refresh token stays accepted this long, then dies."""
    faults: Faults = field(default_factory=Faults)
    clock: Clock = time.time

    def __post_init__(self) -> None:
        if self.videos < 0 or self.tasks < 3 or self.creators < 1:
            raise ValueError("need videos >= 0, tasks >= 3 and creators >= 1")
        if self.history_days < 1:
            raise ValueError("history_days must be >= 1")
        if self.token_lifetime <= 0 or self.token_grace < 0:
            raise ValueError("token_lifetime must be > 0 and token_grace >= 0")
        if self.talent_comma not in (",", "，"):
            raise ValueError('talent_comma must be "," or "，"')
        if self.cache_dates < 1:
            raise ValueError("cache_dates must be >= 1")
        if self.component_token_lifetime <= 0 or self.ticket_period <= 0:
            raise ValueError("component_token_lifetime and ticket_period must be > 0")
        if self.refresh_lifetime <= 0 or self.refresh_grace < 0:
            raise ValueError("refresh_lifetime must be > 0 and refresh_grace >= 0")
        if not self.component_appid:
            raise ValueError("component_appid must not be empty")
        if not 1 <= self.apps <= MAX_APPS:
            raise ValueError(f"apps must be within 1..{MAX_APPS}")
        outside = sorted(n for n in self.apps_without_capability if not 1 <= n <= self.apps)
        if outside:
            raise ValueError(f"apps_without_capability names no app of 1..{self.apps}: {outside}")

    def has_capability(self, number: int) -> bool:
        """Whether app `number` (1-based) holds the data-analysis capability."""
        if number == 1 and not self.capability:
            return False
        return number not in self.apps_without_capability
