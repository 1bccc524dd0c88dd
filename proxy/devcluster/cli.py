"""`rwproxy cluster ...`: argument parsing for the dev cluster, and nothing else.

Every leaf parser sets `handler`. A handler builds a `Cluster` for `--state-dir`, calls one
method, prints a report on stdout, and turns a `ClusterError` (an expected failure: missing
package, port in use, pod that will not start) into a message on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from proxy.devcluster import report, spec
from proxy.devcluster.cluster import Cluster
from proxy.devcluster.errors import ClusterError

Action = Callable[[Cluster, argparse.Namespace], str]


def add_cluster_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `cluster` and its sub-commands to the `rwproxy` sub-command parsers."""
    cluster = commands.add_parser(
        "cluster",
        help="local StatefulSet `mysql` + headless Service `mysql-h` on loopback",
        description="A replicated MariaDB StatefulSet and its cluster DNS, on 127.0.0.x.",
    )
    actions = cluster.add_subparsers(dest="cluster_command", required=True, metavar="ACTION")
    common = _common_options()

    up = _leaf(actions, common, "up", _up, "start the cluster (idempotent)")
    up.add_argument(
        "--pods", type=int, default=None, help=f"number of pods (default {spec.DEFAULT_PODS})"
    )
    up.add_argument(
        "--tls",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="pods refuse TCP logins without TLS (--no-tls: accept them again); pods always "
        "offer TLS, and start/move keep the setting (default: unchanged, initially off)",
    )
    down = _leaf(actions, common, "down", _down, "stop every pod and the DNS server")
    down.add_argument("--purge", action="store_true", help="also delete datadirs and state")
    for name, action, text in (
        ("stop", _stop, "stop a pod; it leaves DNS"),
        ("start", _start, "start a stopped pod; it rejoins DNS when ready"),
        ("move", _move, "restart a pod on a new address, as if rescheduled"),
        ("lag", _lag, "stop (on) or restart (off) a replica's SQL thread"),
    ):
        leaf = _leaf(actions, common, name, action, text)
        leaf.add_argument("pod", help="pod name, e.g. mysql-1")
    actions.choices["move"].add_argument("--to", metavar="ADDRESS", help="a 127.x.y.z address")
    actions.choices["lag"].add_argument("setting", choices=("on", "off"))
    _leaf(actions, common, "status", _status, "pods, replication and DNS")


def _common_options() -> argparse.ArgumentParser:
    """Options every action takes; on the leaves, so they may follow the action name."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help=f"where pods, logs and state live (default: ${spec.STATE_DIR_ENV} "
        f"or {spec.DEFAULT_STATE_DIR})",
    )
    common.add_argument("-v", "--verbose", action="store_true", help="log each step on stderr")
    return common


def _leaf(
    actions: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
    name: str,
    action: Action,
    text: str,
) -> argparse.ArgumentParser:
    leaf = actions.add_parser(name, parents=[common], help=text, description=text)
    leaf.set_defaults(handler=_handler(action))
    return leaf


def _handler(action: Action) -> Callable[[argparse.Namespace], int]:
    """Wrap an action: logging set-up, state dir default, expected errors as one message."""

    def handle(args: argparse.Namespace) -> int:
        logging.basicConfig(
            level=logging.INFO if args.verbose else logging.WARNING,
            format="rwproxy cluster: %(message)s",
        )
        cluster = Cluster(args.state_dir or spec.default_state_dir(os.environ))
        try:
            output = action(cluster, args)
        except ClusterError as exc:
            print(f"rwproxy cluster {args.cluster_command}: error: {exc}", file=sys.stderr)
            return 1
        print(output)
        return 0

    return handle


def _up(cluster: Cluster, args: argparse.Namespace) -> str:
    started = cluster.up(args.pods, tls=args.tls)
    return report.render_up(cluster.status(), started)


def _down(cluster: Cluster, args: argparse.Namespace) -> str:
    cluster.down(purge=args.purge)
    return f"cluster in {cluster.state_dir} stopped" + (" and purged" if args.purge else "")


def _stop(cluster: Cluster, args: argparse.Namespace) -> str:
    cluster.stop(args.pod)
    return f"{args.pod} stopped and removed from DNS"


def _start(cluster: Cluster, args: argparse.Namespace) -> str:
    cluster.start(args.pod)
    return report.render_status(cluster.status())


def _move(cluster: Cluster, args: argparse.Namespace) -> str:
    address = cluster.move(args.pod, args.to)
    return f"{args.pod} now runs at {address}:{spec.MYSQL_PORT}; DNS updated"


def _lag(cluster: Cluster, args: argparse.Namespace) -> str:
    cluster.lag(args.pod, on=args.setting == "on")
    doing = "stopped: it falls behind" if args.setting == "on" else "running: it catches up"
    return f"{args.pod} SQL thread {doing}"


def _status(cluster: Cluster, args: argparse.Namespace) -> str:
    return report.render_status(cluster.status())
