"""The fuzz tests run against the local cluster, like tests/integration: same session fixture."""

from tests.integration.conftest import cluster  # noqa: F401  (the session-wide cluster fixture)
