"""The settings of the legacy protocol, as the appliance's command line gives them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

CaptchaPolicy = Literal["off", "token", "closed"]
CAPTCHA_POLICIES: tuple[CaptchaPolicy, ...] = ("off", "token", "closed")


@dataclass(frozen=True)
class LegacyOptions:
    """What ``--legacy*`` set.

    ``captcha`` is the sign-up policy: ``"off"`` accepts the original client's missing or
    any token (the original default, captcha ``NONE``); ``"token"`` requires a token issued
    by the operator (``issue_captcha_token``), good once for sign-up and once for StoreEnable
    within its lifetime; ``"closed"`` refuses every legacy sign-up.
    """

    enabled: bool = False
    keyserver_endpoint: str = "tcp:7000"
    mailserver_endpoint: str = "tcp:7001"
    plain: bool = False
    captcha: CaptchaPolicy = "off"
    domains: tuple[str, ...] = field(default_factory=tuple)
    hostname: str = "localhost"
    max_accounts: int = 1000
    #: Accepted distance between ``X-Mv-Date`` and the server clock.
    date_skew_seconds: int = 15 * 60
    #: Reader-idle timeout of a line connection (the original's AUTH_TIMEOUT).
    idle_timeout: float = 45.0
    #: Sign-ups that never deliver their server environment are forgotten after this.
    pending_lifetime_seconds: int = 24 * 3600

    def __post_init__(self) -> None:
        if self.captcha not in CAPTCHA_POLICIES:
            raise ValueError(f"legacy captcha policy must be one of {', '.join(CAPTCHA_POLICIES)}")
        if self.max_accounts < 1:
            raise ValueError("legacy max_accounts must be at least 1")
