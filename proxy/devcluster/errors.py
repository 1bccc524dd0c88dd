"""The one exception `rwproxy cluster` expects to happen.

Anything the user can cause or fix (a missing package, a port in use, a pod that will not start)
is a `ClusterError` whose message is the whole explanation: the CLI prints it without a traceback.
Any other exception is a bug and keeps its traceback.
"""


class ClusterError(Exception):
    """An expected failure, explained in its message for the person at the terminal."""
