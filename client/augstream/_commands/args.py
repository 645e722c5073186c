"""What the client commands share: argument types, ``--set NAME=VALUE`` for any spec
field, ``--target-size``, and the parser every command is made with."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import httpx

from augstream_protocol.fields import field_value

__all__ = ["Command", "add_set", "add_target_size", "command", "positive", "server_url"]

Command = Callable[[argparse.Namespace], None]


def server_url(value: str) -> str:
    try:
        scheme = httpx.URL(value).scheme
    except httpx.InvalidURL as exc:
        raise argparse.ArgumentTypeError(f"not a URL: {value!r} ({exc})") from None
    if scheme not in ("http", "https"):
        raise argparse.ArgumentTypeError(f"expected http://HOST:PORT, got {value!r}")
    return value


def positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {value!r}")
    return number


class SetField(argparse.Action):
    """``--set NAME=VALUE``, repeatable, into ``args.fields``. VALUE is JSON when it parses
    (``20``, ``true``, ``[0.9,1.1]``), text otherwise (``reflect``), as in a preview URL.

    ``reserved`` maps the spec fields a command sets from its own options to those options,
    so a field is never given twice with one value silently winning.
    """

    def __init__(self, *args: Any, reserved: dict[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reserved = reserved

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        name, equals, raw = str(values).partition("=")
        name = name.strip()
        if not equals or not name:
            parser.error(f"--set: expected NAME=VALUE, got {values!r}")
        if name in self.reserved:
            parser.error(f"--set {name}: {self.reserved[name]}")
        fields = dict(getattr(namespace, self.dest) or {})
        fields[name] = field_value(raw)
        setattr(namespace, self.dest, fields)


def add_set(parser: argparse.ArgumentParser, reserved: dict[str, str]) -> None:
    parser.add_argument(
        "--set",
        dest="fields",
        action=SetField,
        reserved=reserved,
        default={},
        metavar="NAME=VALUE",
        help="any stream spec field, repeatable: --set rotation_range=20 --set "
        "horizontal_flip=true --set 'zoom_range=[0.9,1.1]' (VALUE is JSON, else text)",
    )


def add_target_size(parser: argparse.ArgumentParser, default: tuple[int, int]) -> None:
    parser.add_argument(
        "--target-size",
        nargs=2,
        type=positive,
        default=default,
        metavar=("H", "W"),
        help=f"image height and width in pixels (default: {default[0]} {default[1]})",
    )


if TYPE_CHECKING:  # not subscriptable at run time
    Subcommands = argparse._SubParsersAction[argparse.ArgumentParser]


def command(
    commands: Subcommands,
    common: argparse.ArgumentParser,
    name: str,
    summary: str,
    description: str,
    example: str,
) -> argparse.ArgumentParser:
    """A subcommand that takes the common arguments (the URL, ``--api-key``) and shows an
    example under its help."""
    return commands.add_parser(
        name,
        parents=[common],
        help=summary,
        description=description,
        epilog=f"example:\n  {example}",
        # Keeps the example's line breaks.
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
