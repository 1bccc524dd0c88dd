"""The value types: endpoints are identities, snapshots are read-only."""

from __future__ import annotations

import dataclasses

import pytest

from proxy.topology.model import Endpoint, HealthState, PodHealth, Topology
from tests.unit.topology.fakes import endpoint


def test_endpoint_is_a_hashable_value_with_an_address() -> None:
    a, b = Endpoint("mysql-1", "10.0.0.11", 3306), Endpoint("mysql-1", "10.0.0.11", 3306)
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a.address == "10.0.0.11:3306"
    assert str(a) == "mysql-1@10.0.0.11:3306"
    assert Endpoint("x", "fd00::1", 3306).address == "[fd00::1]:3306"
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.host = "10.0.0.99"  # type: ignore[misc]


def test_moved_pod_is_another_endpoint() -> None:
    assert endpoint("mysql-1") != endpoint("mysql-1", host="10.0.0.21")


def test_gtid_follows_the_flavor() -> None:
    ep = endpoint("mysql-0")
    mariadb = PodHealth("mysql-0", ep, flavor="mariadb", gtid_current_pos="0-1-5")
    mysql = PodHealth("mysql-0", ep, flavor="mysql", gtid_executed="uuid:1-5")
    assert (mariadb.gtid, mysql.gtid) == ("0-1-5", "uuid:1-5")


def test_topology_is_read_only_and_answers_router_questions() -> None:
    writer, reader = endpoint("mysql-0"), endpoint("mysql-1")
    pods = {"mysql-0": writer, "mysql-1": reader}
    health = {
        "mysql-0": PodHealth("mysql-0", writer, HealthState.UP, gtid_current_pos="0-1-9"),
        "mysql-1": PodHealth("mysql-1", reader, HealthState.UP, gtid_current_pos="0-1-7"),
    }
    topology = Topology(pods=pods, health=health, writer=writer, readers=(reader,), dns_ok=True)
    pods["mysql-2"] = endpoint("mysql-2")  # the caller's dict is copied, not shared
    assert list(topology.pods) == ["mysql-0", "mysql-1"]
    with pytest.raises(TypeError):
        topology.pods["mysql-9"] = writer  # type: ignore[index]
    assert topology.is_writer(writer) and not topology.is_writer(reader)
    assert not topology.is_writer(endpoint("mysql-0", host="10.0.0.99"))
    assert topology.usable_readers() == (reader,)
    assert topology.gtid_positions == {"mysql-0": "0-1-9", "mysql-1": "0-1-7"}


def test_empty_topology_explains_itself() -> None:
    empty = Topology()
    assert empty.writer is None and not empty.dns_ok and empty.version == 0
    assert "writer none (topology not resolved yet)" in empty.describe()
    assert "readers none (reads go to the writer)" in empty.describe()


def test_shape_ignores_moving_lag_and_gtids() -> None:
    ep = endpoint("mysql-1")
    one = PodHealth("mysql-1", ep, HealthState.UP, lag_seconds=0, gtid_current_pos="0-1-1")
    two = dataclasses.replace(one, lag_seconds=3, gtid_current_pos="0-1-2", checked_at=9)
    three = dataclasses.replace(one, state=HealthState.LAGGING)
    shape = Topology(health={"mysql-1": one}).shape()
    assert Topology(health={"mysql-1": two}, version=7).shape() == shape
    assert Topology(health={"mysql-1": three}).shape() != shape
