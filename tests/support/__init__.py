"""Helpers shared by the test packages: harnesses, clients and fixtures (no test module imports another)."""
