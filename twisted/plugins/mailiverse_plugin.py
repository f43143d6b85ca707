"""Registers ``twistd mailiverse``; the real work lives in :mod:`mailiverse.tap`."""

from twisted.application.service import ServiceMaker

mailiverse = ServiceMaker(
    "mailiverse",
    "mailiverse.tap",
    "A private mail appliance: SMTP in, mail encrypted to each recipient at once.",
    "mailiverse",
)
