"""Failed-login limiting through a real proxy (proxy/auth_guard.py, config `auth`).

Clients pick their source address on loopback (127.0.0.0/8 is all local on Linux), so one
address can be blocked while another one logs in as usual.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pymysql
import pytest

from proxy.config import AuthConfig
from tests.support.proxy_harness import ProxyThread

pytestmark = pytest.mark.integration

StartProxy = Callable[..., ProxyThread]
ATTACKER = "127.0.0.66"
NEIGHBOUR = "127.0.0.67"


def login(proxy: ProxyThread, source: str, password: str) -> int:
    """0 when logged in, else the error code."""
    try:
        conn = pymysql.connect(
            host="127.0.0.1",
            port=proxy.port,
            user="app",
            password=password,
            bind_address=source,
            connect_timeout=5,
        )
    except pymysql.err.OperationalError as exc:
        return int(exc.args[0])
    conn.close()
    return 0


def test_failed_logins_block_only_their_address_and_the_block_ends(
    start_proxy: StartProxy,
) -> None:
    auth = AuthConfig(
        max_failures=3, window_seconds=30, base_backoff_seconds=1.0, max_backoff_seconds=2.0
    )
    proxy = start_proxy(auth=auth)
    assert [login(proxy, ATTACKER, "wrong") for _ in range(3)] == [1045, 1045, 1045]
    # Blocked now, even with the right password; another address is not affected.
    assert login(proxy, ATTACKER, "app-password") == 1129
    assert login(proxy, NEIGHBOUR, "app-password") == 0
    assert login(proxy, NEIGHBOUR, "wrong") == 1045
    assert login(proxy, NEIGHBOUR, "app-password") == 0
    # The block ends by itself, and a good login clears the address's count.
    deadline = time.monotonic() + 10
    while login(proxy, ATTACKER, "app-password") == 1129:
        assert time.monotonic() < deadline, "the block did not end"
        time.sleep(0.2)
    assert login(proxy, ATTACKER, "wrong") == 1045
    assert login(proxy, ATTACKER, "app-password") == 0


def test_unknown_user_and_wrong_password_read_the_same(start_proxy: StartProxy) -> None:
    proxy = start_proxy(auth=AuthConfig(max_failures=0))
    messages = []
    for user in ("app", "no-such-user"):
        with pytest.raises(pymysql.err.OperationalError) as failure:
            pymysql.connect(
                host="127.0.0.1", port=proxy.port, user=user, password="wrong", connect_timeout=5
            )
        code, message = failure.value.args
        messages.append((code, message.replace(user, "<user>")))
    assert messages[0] == messages[1]
    assert messages[0][0] == 1045
