"""Keep the CA certificate current inside the running appliance: order, install, reload in place.

With front ends sharing a metabase (``shared``, ``mailiverse.acme.shared``) each of them polls every
few minutes for the certificate another one published and loads it; only the holder of the renewal
lease orders, and publishes what it got for the others.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall

from mailiverse.acme.certs import improves_on, install_certificate, needs_certificate, new_key_pem
from mailiverse.acme.client import AcmeClient, new_account_key_pem
from mailiverse.acme.http01 import IChallengeStore
from mailiverse.acme.shared import SharedCertificates
from mailiverse.logs import Logger
from mailiverse.privatefile import create_private_once, private_dir

log = Logger()
CHECK_INTERVAL = 12 * 3600.0
RETRY_INTERVAL = 3600.0
FIRST_CHECK_DELAY = 5.0
#: How often a front end sharing a metabase looks for a certificate another one published.
SHARED_POLL_INTERVAL = 300.0


def load_or_create_account_key(path: Path) -> bytes:
    """The ACME account key (EC P-256, 0600), made on first use."""
    if not path.exists():
        private_dir(path.parent)
    return create_private_once(path, new_account_key_pem)


class CertificateRenewal(Service):
    """Checks the certificate at start and every 12 hours; renews through ACME and calls ``on_installed``.

    With ``shared``, checks every ``SHARED_POLL_INTERVAL`` seconds: first loads a better certificate
    another front end published, then orders only if it still needs one and holds the renewal lease.
    """

    name = "acme"  # type: ignore[assignment]  # Service declares name as None

    def __init__(
        self,
        client: AcmeClient,
        challenges: IChallengeStore,
        cert_path: Path,
        key_path: Path,
        names: tuple[str, ...],
        on_installed: Callable[[], None],
        reactor: Any,
        *,
        first_delay: float = FIRST_CHECK_DELAY,
        optional_names: tuple[str, ...] = (),
        shared: SharedCertificates | None = None,
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
        self._shared = shared
        #: When the published certificate this front end last looked at was published.
        self._seen_ms = -1

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
            interval = CHECK_INTERVAL if self._shared is None else SHARED_POLL_INTERVAL
            self._schedule(RETRY_INTERVAL if failed else interval)

        self._running_check.addBoth(done)

    async def check(self, now: datetime.datetime | None = None) -> bool:
        """Renew if needed; returns whether a new certificate was installed (and the listeners reloaded).

        A certificate is due when it does not cover the required names or is near expiry. The
        optional names are ordered with the required ones at each due renewal and once per start
        while the current certificate lacks them; if that order fails (their DNS is not published
        yet, say), a due renewal falls back to the required names alone, and a certificate that is
        not due is kept. So a missing optional record never costs the certificate, and never
        orders a new one every 12 hours. Shared, a certificate another front end published counts as
        installed, and only the holder of the renewal lease orders.
        """
        if self._shared is None:
            return await self._renew_if_due(now)
        loaded = await self._load_published()
        if not any(self._due(now)):
            return loaded
        if not await self._shared.take_lease():
            return loaded  # another front end is ordering: its certificate arrives with a later poll
        keeper = LoopingCall(lambda: Deferred.fromCoroutine(self._keep_lease()))
        keeper.clock = self._reactor
        keeper.start(self._shared.lease_ttl / 3, now=False)
        try:
            # It may have published just before the lease lapsed into our hands.
            loaded = await self._load_published() or loaded
            renewed = await self._renew_if_due(now)
        except BaseException:
            keeper.stop()
            # Held on for the retry interval, so no other front end asks the CA again sooner.
            await self._shared.release_lease(hold_for=RETRY_INTERVAL)
            raise
        keeper.stop()
        await self._shared.release_lease()
        return renewed or loaded

    def _due(self, now: datetime.datetime | None) -> tuple[bool, bool]:
        """Whether the required names need a certificate, and whether to order the optional ones with them."""
        due = needs_certificate(self._cert_path, self._names, now)
        full = self._names + self._optional
        want_full = (
            bool(self._optional) and (due or not self._optional_tried) and needs_certificate(self._cert_path, full, now)
        )
        return due, want_full

    async def _keep_lease(self) -> None:
        assert self._shared is not None
        try:
            if not await self._shared.keep_lease():
                log.warn("the certificate renewal lease lapsed while ordering; another front end may order too")
        except Exception as error:  # noqa: BLE001 - the order goes on; the lease lapses at worst
            log.warn("could not renew the certificate renewal lease: {why}", why=type(error).__name__)

    async def _load_published(self) -> bool:
        """Install the certificate another front end published, if it is better than ours; say whether it was."""
        assert self._shared is not None
        stored = await self._shared.newest(self._seen_ms)
        if stored is None:
            return False
        self._seen_ms = stored.updated_ms
        if not improves_on(stored.chain_pem, self._cert_path, self._names):
            return False
        install_certificate(self._cert_path, self._key_path, stored.chain_pem, stored.key_pem)
        self._on_installed()
        log.info("loaded the certificate another front end obtained for {names}", names=", ".join(self._names))
        return True

    async def _renew_if_due(self, now: datetime.datetime | None) -> bool:
        due, want_full = self._due(now)
        full = self._names + self._optional
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
        if self._shared is not None:
            await self._shared.publish(chain, key_pem)
        install_certificate(self._cert_path, self._key_path, chain, key_pem)
        self._on_installed()
        log.info("installed a new certificate for {names}", names=", ".join(names))
        return True
