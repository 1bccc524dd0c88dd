"""The local StatefulSet + headless Service on loopback behind `rwproxy cluster`.

`Cluster` (in `cluster.py`) is the in-process API that the CLI and the integration tests share.
"""
