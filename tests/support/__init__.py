"""Helpers shared by the integration tests (servers and harnesses run in-process)."""
