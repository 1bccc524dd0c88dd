"""rwproxy: a write-routing MySQL/MariaDB proxy for StatefulSets behind a headless Service."""

__version__ = "0.1.0"
