"""mailiverse: a private mail appliance built on Twisted."""

__version__ = "0.1.0"
