"""Keep the CA certificate current inside the running appliance: order, install, reload in place."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred

from mailiverse.acme.certs import install_certificate, needs_certificate, new_key_pem
from mailiverse.acme.client import AcmeClient, new_account_key_pem
from mailiverse.acme.http01 import ChallengeStore
from mailiverse.logs import Logger
from mailiverse.privatefile import create_private_once, private_dir

log = Logger()
CHECK_INTERVAL = 12 * 3600.0
RETRY_INTERVAL = 3600.0
FIRST_CHECK_DELAY = 5.0


def load_or_create_account_key(path: Path) -> bytes:
    """The ACME account key (EC P-256, 0600), made on first use."""
    if not path.exists():
        private_dir(path.parent)
    return create_private_once(path, new_account_key_pem)


class CertificateRenewal(Service):
    """Checks the certificate at start and every 12 hours; renews through ACME and calls ``on_installed``."""

    name = "acme"  # type: ignore[assignment]  # Service declares name as None

    def __init__(
        self,
        client: AcmeClient,
        challenges: ChallengeStore,
        cert_path: Path,
        key_path: Path,
        names: tuple[str, ...],
        on_installed: Callable[[], None],
        reactor: Any,
        *,
        first_delay: float = FIRST_CHECK_DELAY,
        optional_names: tuple[str, ...] = (),
    ) -> None:
        self._client = client
        self._challenges = challenges
        self._cert_path = cert_path
        self._key_path = key_path
        self._names = names
        #: Names the certificate should also cover when their DNS is in place (mta-sts.<domain>);
        #: an order that fails for them must not leave the appliance without a certificate.
        self._optional = tuple(n for n in dict.fromkeys(optional_names) if n not in names)
        self._optional_tried = False
        self._on_installed = on_installed
        self._reactor = reactor
        self._first_delay = first_delay
        self._call: Any = None
        self._running_check: Deferred[bool] | None = None

    def startService(self) -> None:
        super().startService()
        self._schedule(self._first_delay)

    def stopService(self) -> Any:
        super().stopService()
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _schedule(self, delay: float) -> None:
        if self.running:
            self._call = self._reactor.callLater(delay, self._tick)

    def _tick(self) -> None:
        self._call = None
        self._running_check = Deferred.fromCoroutine(self.check())

        def done(renewed_or_failure: Any) -> None:
            failed = not isinstance(renewed_or_failure, bool)
            if failed:
                log.failure("certificate renewal failed; retrying in an hour", renewed_or_failure)
            self._schedule(RETRY_INTERVAL if failed else CHECK_INTERVAL)

        self._running_check.addBoth(done)

    async def check(self, now: datetime.datetime | None = None) -> bool:
        """Renew if needed; returns whether a new certificate was installed (and the listeners reloaded).

        A certificate is due when it does not cover the required names or is near expiry. The
        optional names are ordered with the required ones at each due renewal and once per start
        while the current certificate lacks them; if that order fails (their DNS is not published
        yet, say), a due renewal falls back to the required names alone, and a certificate that is
        not due is kept. So a missing optional record never costs the certificate, and never
        orders a new one every 12 hours.
        """
        due = needs_certificate(self._cert_path, self._names, now)
        full = self._names + self._optional
        want_full = (
            bool(self._optional) and (due or not self._optional_tried) and needs_certificate(self._cert_path, full, now)
        )
        if not due and not want_full:
            return False
        if want_full:
            self._optional_tried = True
            try:
                return await self._issue(full)
            except Exception as error:  # noqa: BLE001 - any failure of the wider order has the same answer
                log.warn(
                    "could not get a certificate that also covers {optional} ({error}); "
                    "publish their DNS records (mailiverse-admin setup prints them)",
                    optional=", ".join(self._optional),
                    error=str(error)[:200],
                )
                if not due:
                    return False
        return await self._issue(self._names)

    async def _issue(self, names: tuple[str, ...]) -> bool:
        key_pem = new_key_pem()
        chain = await self._client.issue(names, self._challenges, key_pem)
        install_certificate(self._cert_path, self._key_path, chain, key_pem)
        self._on_installed()
        log.info("installed a new certificate for {names}", names=", ".join(names))
        return True
