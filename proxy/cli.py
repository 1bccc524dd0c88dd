"""Command-line entry point: argument parsing only.

Each sub-command lives in its own module and is imported lazily, so that
`rwproxy cluster ...` does not pay for importing the proxy and vice versa.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from proxy import __version__, compiled
from proxy.config import ConfigError

if TYPE_CHECKING:
    from proxy.config import Config


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rwproxy", description=__doc__)
    parser.add_argument(
        "--version", action="version", version=f"rwproxy {__version__} ({compiled.describe()})"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the proxy")
    serve.add_argument("--config", help="YAML config file (default: $RWPROXY_CONFIG)")
    serve.set_defaults(handler=_serve)

    check = commands.add_parser(
        "check", help="validate a config file, then resolve and log in to every pod once"
    )
    check.add_argument("--config", help="YAML config file (default: $RWPROXY_CONFIG)")
    check.add_argument(
        "--offline",
        action="store_true",
        help="only validate the file (no DNS, no logins): for CI and image builds",
    )
    check.set_defaults(handler=_check)

    demo = commands.add_parser("demo", help="local cluster + proxy + a mixed workload")
    demo.add_argument("--config", default="config/local.yaml", help="proxy config for the demo")
    demo.set_defaults(handler=_demo)

    from proxy.devcluster.cli import add_cluster_parser

    add_cluster_parser(commands)
    return parser


def _config_path(args: argparse.Namespace) -> Path:
    from proxy.config import config_path_from

    path = config_path_from(args.config, os.environ)
    if path is None:
        raise ConfigError(["no configuration: pass --config FILE or set RWPROXY_CONFIG"])
    return path


def _load_config(path: Path) -> Config:
    from proxy.config import load_file

    return load_file(path, os.environ)


def _serve(args: argparse.Namespace) -> int:
    from proxy.app import run_serve

    path = _config_path(args)
    return run_serve(_load_config(path), path)


def _check(args: argparse.Namespace) -> int:
    config = _load_config(_config_path(args))
    if args.offline:
        print(f"configuration OK: listen {config.listen}, writer {config.discovery.writer}")
        return 0
    from proxy.check import run_check

    return run_check(config)


def _demo(args: argparse.Namespace) -> int:
    from proxy.demo import run_demo

    return run_demo(args.config)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = args.handler
    try:
        return int(handler(args) or 0)
    except ConfigError as exc:
        print(f"rwproxy: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Whoever read our output left (`rwproxy cluster status | head -1`): not an error.
        # Point stdout at /dev/null so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
