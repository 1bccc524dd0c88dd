"""Shared pytest set-up: fixture modules used across test folders."""

pytest_plugins = ["tests.integration.cluster_fixtures", "tests.integration.proxy_fixtures"]
