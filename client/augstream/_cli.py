"""The ``augstream`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="augstream",
        description="Stream augmented image batches from a shared server.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve", help="serve folders of images", description="Serve folders of class subfolders."
    )
    try:
        from augstream_service.cli import add_serve_arguments
    except ImportError:
        serve.set_defaults(missing_service=True)
        serve.add_argument("rest", nargs=argparse.REMAINDER)
    else:
        add_serve_arguments(serve)
    demo = commands.add_parser(
        "demo",
        help="serve a small real data set locally and stream augmented batches from it",
        description="Start a server on loopback over scikit-learn's digits and stream from it.",
    )
    demo.add_argument(
        "--batches", type=int, default=20, help="batches to stream (default: %(default)s)"
    )
    demo.add_argument(
        "--out", default="augstream-demo", help="folder for the data and the preview grid"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``augstream`` console script."""
    args = _parser().parse_args(argv)
    if args.command == "serve":
        if getattr(args, "missing_service", False):
            print(
                "augstream serve needs the server extra: pip install 'augstream[service]'",
                file=sys.stderr,
            )
            return 2
        from augstream_service.cli import serve

        return serve(args)
    from ._demo import run_demo

    return run_demo(batches=args.batches, out=args.out)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
