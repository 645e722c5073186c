"""The ``augstream`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ._commands import add_client_commands, run_client_command

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
    add_client_commands(commands)
    demo = commands.add_parser(
        "demo",
        help="train a Keras CNN on handwritten digits streamed from a local server",
        description="Start a server on loopback over scikit-learn's digits, train the lecture's "
        "CNN through its streams, and run the horizontal-flip lab experiment.",
    )
    demo.add_argument(
        "--epochs", type=int, default=5, help="training epochs (default: %(default)s)"
    )
    demo.add_argument("--out", default="augstream-demo", help="folder for the data set")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``augstream`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"] and "--compare" in argv:
        # The comparison runs its own servers on loopback: no URL, options of its own.
        return _compare([a for a in argv[1:] if a != "--compare"])
    args = _parser().parse_args(argv)
    if hasattr(args, "client_command"):
        return run_client_command(args)
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

    return run_demo(epochs=args.epochs, out=args.out)


def _compare(argv: list[str]) -> int:
    # The comparison imports TensorFlow and the rivals: it lives in the checkout's
    # benchmarks/, not in the installed packages (a server image carries none of it).
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "benchmarks" / "comparison").is_dir() and str(checkout) not in sys.path:
        sys.path.insert(0, str(checkout))
    try:
        from benchmarks.comparison import main as compare
    except ImportError as exc:
        print(
            f"augstream bench --compare runs from a checkout of augstream with the server, "
            f"Keras and demo extras ({exc.name} is missing): in the checkout, "
            "pip install -e '.[service,keras,demo]' and run python -m benchmarks.compare",
            file=sys.stderr,
        )
        return 2
    return compare(argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
