"""Command-line entry point: argument parsing only.

Each sub-command lives in its own module and is imported lazily, so that
`rwproxy cluster ...` does not pay for importing the proxy and vice versa.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from proxy import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rwproxy", description=__doc__)
    parser.add_argument("--version", action="version", version=f"rwproxy {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    from proxy.devcluster.cli import add_cluster_parser

    add_cluster_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = args.handler
    try:
        return int(handler(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
