"""replay_key: a later setting of the same thing replaces the earlier one in the replay list."""

from __future__ import annotations

import pytest

from proxy.session import replay_key


@pytest.mark.parametrize(
    ("sql", "key"),
    [
        (b"SET autocommit=0", b"autocommit"),
        (b"set AUTOCOMMIT = 1", b"autocommit"),
        (b"SET SESSION sql_mode = 'ANSI'", b"sql_mode"),
        (b"SET @@session.sql_mode='TRADITIONAL';", b"sql_mode"),
        (b"SET @@time_zone = '+00:00'", b"time_zone"),
        (b"SET LOCAL wait_timeout=100", b"wait_timeout"),
        (b"SET @x = 5", b"@x"),
        (b"SET @X := 'a'", b"@x"),
        (b"SET NAMES utf8mb4", b"names"),
        (b"SET NAMES latin1 COLLATE latin1_bin", b"names"),
        (b"SET CHARACTER SET utf8", b"names"),
        (b"SET CHARSET utf8", b"names"),
    ],
)
def test_single_settings_are_keyed_by_what_they_set(sql: bytes, key: bytes) -> None:
    assert replay_key(sql) == key


@pytest.mark.parametrize(
    "sql",
    [
        b"SET @a = 1, @b = 2",  # two settings: its own entry
        b"SET sql_mode = 'A,B'",  # a comma inside the value is not split on
        b"SET TRANSACTION ISOLATION LEVEL READ COMMITTED",
    ],
)
def test_anything_else_is_its_own_key(sql: bytes) -> None:
    assert replay_key(sql) == sql
