"""One app's share of a sandbox: credentials, capability, tokens (its own, and the authorizer
tokens the service provider holds for it as a merchant), throttles, counters, and its own data
(dataset and rosters, built on first use so a sandbox of many apps starts at once)."""

from __future__ import annotations

from sync.sandbox.config import SandboxConfig
from sync.sandbox.credentials import AppCredentials
from sync.sandbox.dataset import Dataset
from sync.sandbox.rendered import RenderedDays
from sync.sandbox.rosters import Rosters
from sync.sandbox.stats import Stats
from sync.sandbox.throttle import SlidingWindow
from sync.sandbox.tokens import TokenStore


def app_seed(seed: int, number: int) -> int:
    """The seed of app `number`'s data: app 1 keeps the sandbox's, the others each their own."""
    return seed if number == 1 else (seed << 32) + number


class AppState:
    """What the platform keeps per app: the 10-per-second window and the token rate limit count
    its requests only, its tokens open its data only."""

    def __init__(
        self,
        config: SandboxConfig,
        credentials: AppCredentials,
        *,
        rendered: RenderedDays,
        ids_in_use: set[int],
    ) -> None:
        self.config = config
        self.credentials = credentials
        self.number = credentials.number
        self.seed = app_seed(config.seed, self.number)
        self.capability = config.has_capability(self.number)
        lifetime, grace, clock = config.token_lifetime, config.token_grace, config.clock
        self.client_tokens = TokenStore(
            prefix="clt.", lifetime=lifetime, grace=grace, clock=clock, app=self.number
        )
        self.app_tokens = TokenStore(
            prefix="0801121846", lifetime=lifetime, grace=grace, clock=clock, app=self.number
        )
        self.authorizer_tokens = TokenStore(
            prefix="act.", lifetime=lifetime, grace=grace, clock=clock, app=self.number
        )
        """The provider's tokens for this app as its merchant: they open the same data and
        count against the same windows as its client tokens."""
        self.daily_window = SlidingWindow(config.qps_limit, 1.0)
        self.token_window = SlidingWindow(config.token_rate_limit, config.token_rate_window)
        self.counters = Stats()
        self._rendered = rendered
        self._ids_in_use = ids_in_use
        self._dataset: Dataset | None = None
        self._rosters: Rosters | None = None

    def build(self) -> Rosters:
        """Build its dataset and rosters now (if not yet); returns the rosters."""
        if self._rosters is None:
            self._rosters = Rosters(self.dataset.catalog, self.seed, comma=self.config.talent_comma)
        return self._rosters

    @property
    def built(self) -> bool:
        """Whether its data exists yet."""
        return self._dataset is not None

    @property
    def dataset(self) -> Dataset:
        if self._dataset is None:
            dataset = Dataset(
                self.config,
                seed=self.seed,
                app=self.number,
                rendered=self._rendered,
                reserved=self._ids_in_use,
            )
            ids = dataset.ids()
            shared = ids & self._ids_in_use
            if shared:  # ids are 19 random digits: never in practice, but never silently
                raise RuntimeError(f"app {self.number} shares ids with another app: {shared}")
            self._ids_in_use |= ids
            self._dataset = dataset
        return self._dataset

    @property
    def rosters(self) -> Rosters:
        return self.build()

    def reset(self) -> None:
        """Counters and throttle history cleared; data back to the seed (tokens stay)."""
        self.counters.reset()
        self.daily_window.reset()
        self.token_window.reset()
        if self._dataset is not None:
            self._dataset.reset()
        if self._rosters is not None:
            self._rosters.reset()

    def revoke_tokens(self) -> None:
        self.client_tokens.revoke_all()
        self.app_tokens.revoke_all()
        self.authorizer_tokens.revoke_all()
