"""Alembic migration scripts for the store (configured in code by mailiverse.store.migrate)."""
