"""The client commands of ``augstream``: ``datasets``, ``preview`` and ``bench``.

Each command prints its result on stdout. Failures a user can fix (no server there, a wrong
key, an unknown dataset, a bad spec) become one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

import httpx
from pydantic import ValidationError

from augstream._exceptions import AugstreamError, AuthenticationError, ConnectionError

from .args import Command, server_url
from .bench import add_bench
from .datasets import add_datasets
from .preview import add_preview

__all__ = ["add_client_commands", "run_client_command"]


if TYPE_CHECKING:
    from .args import Subcommands


def add_client_commands(commands: Subcommands) -> None:
    """Add ``datasets``, ``preview`` and ``bench`` to the subcommands of ``augstream``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("url", type=server_url, metavar="URL", help="the server, http://HOST:PORT")
    common.add_argument(
        "--api-key",
        default=None,
        metavar="KEY",
        help="the server's API key (default: the AUGSTREAM_API_KEY environment variable)",
    )
    add_datasets(commands, common)
    add_preview(commands, common)
    add_bench(commands, common)


def run_client_command(args: argparse.Namespace) -> int:
    """Run the command ``args`` names; 1 with a one-line message for an error a user can fix,
    130 when interrupted. Anything else is a bug and keeps its traceback."""
    command: Command = args.client_command
    try:
        command(args)
    except KeyboardInterrupt:
        print(f"\naugstream {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        message = _explain(exc, args)
        if message is None:
            raise
        print(f"augstream {args.command}: {message}", file=sys.stderr)
        return 1
    return 0


def _explain(exc: Exception, args: argparse.Namespace) -> str | None:
    url = args.url
    if isinstance(exc, httpx.TransportError | ConnectionError):
        reason = (exc.reason if isinstance(exc, ConnectionError) else "") or str(exc)
        return (
            f"cannot reach {url} ({reason}): an augstream server must be running there "
            "(start one with: augstream serve DIR)"
        )
    if isinstance(exc, AuthenticationError):
        given = args.api_key is not None or os.environ.get("AUGSTREAM_API_KEY")
        problem = "refused the API key" if given else "needs an API key"
        return f"{url} {problem}: pass --api-key KEY or set AUGSTREAM_API_KEY"
    if isinstance(exc, ValidationError):
        return f"invalid stream spec: {_problems(exc)}"
    if isinstance(exc, AugstreamError | TimeoutError):
        return str(exc)
    return None


def _problems(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"])
        # Model-level checks name their field in the message itself.
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{where}: {message}" if where else message)
    return "; ".join(problems)
