"""Errors raised by the sans-I/O protocol layer.

`protocol/` raises only `ProtocolError` subclasses (h11's split):

* `RemoteProtocolError`: the peer sent bytes that break the protocol (short payload,
  lying length, unknown packet). The session turns it into an ERR packet or a close.
* `LocalProtocolError`: we asked a state machine for something it cannot do now; a bug
  on our side, never the peer's fault.

`MySQLError` is different: it is a well-formed ERR the proxy wants to *send* (or received),
carrying the MySQL error code, SQLSTATE and message.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Base class: the state machine that raised it is now unusable."""


class RemoteProtocolError(ProtocolError):
    """The peer violated the protocol."""


class LocalProtocolError(ProtocolError):
    """We misused a protocol object."""


class MySQLError(Exception):
    """An error with a MySQL error code and SQLSTATE, ready to become an ERR packet."""

    def __init__(self, code: int, message: str, sqlstate: str | None = None) -> None:
        from proxy.protocol.constants import sqlstate_for

        super().__init__(message)
        self.code = code
        self.message = message
        self.sqlstate = sqlstate or sqlstate_for(code)

    def __repr__(self) -> str:
        return f"MySQLError({self.code}, {self.message!r}, {self.sqlstate!r})"
