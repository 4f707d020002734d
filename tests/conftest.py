"""Fixture plugins of the real servers the tests start (each fails, never skips)."""

pytest_plugins: list[str] = []
