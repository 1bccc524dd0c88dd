"""Shared pytest set-up: fixture modules used across test folders."""

pytest_plugins = ["tests.integration.proxy_fixtures"]
