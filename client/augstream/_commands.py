"""The client commands of ``augstream``: ``datasets``, ``preview`` and ``bench``.

Each command prints its result on stdout. Failures a user can fix (no server there, a wrong
key, an unknown dataset, a bad spec) become one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import struct
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import httpx
from pydantic import ValidationError

from ._exceptions import AugstreamError, AuthenticationError
from .client import Client
from .info import DatasetInfo
from .spec import field_value
from .stream import Batch, Stream

__all__ = ["add_client_commands", "run_client_command"]

Command = Callable[[argparse.Namespace], None]

#: Longest wait for one batch in ``bench``; the stream itself reconnects on silence sooner.
_BATCH_TIMEOUT_S = 120.0
_WARMUP_BATCHES = 2
#: Classes listed per dataset in the table (``--json`` has them all).
_CLASSES_SHOWN = 8


# --- arguments ----------------------------------------------------------------------------


def _server_url(value: str) -> str:
    try:
        scheme = httpx.URL(value).scheme
    except httpx.InvalidURL as exc:
        raise argparse.ArgumentTypeError(f"not a URL: {value!r} ({exc})") from None
    if scheme not in ("http", "https"):
        raise argparse.ArgumentTypeError(f"expected http://HOST:PORT, got {value!r}")
    return value


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {value!r}")
    return number


class _SetField(argparse.Action):
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


def _add_set(parser: argparse.ArgumentParser, reserved: dict[str, str]) -> None:
    parser.add_argument(
        "--set",
        dest="fields",
        action=_SetField,
        reserved=reserved,
        default={},
        metavar="NAME=VALUE",
        help="any stream spec field, repeatable: --set rotation_range=20 --set "
        "horizontal_flip=true --set 'zoom_range=[0.9,1.1]' (VALUE is JSON, else text)",
    )


def _add_target_size(parser: argparse.ArgumentParser, default: tuple[int, int]) -> None:
    parser.add_argument(
        "--target-size",
        nargs=2,
        type=_positive,
        default=default,
        metavar=("H", "W"),
        help=f"image height and width in pixels (default: {default[0]} {default[1]})",
    )


if TYPE_CHECKING:  # not subscriptable at run time
    Subcommands = argparse._SubParsersAction[argparse.ArgumentParser]


def add_client_commands(commands: Subcommands) -> None:
    """Add ``datasets``, ``preview`` and ``bench`` to the subcommands of ``augstream``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("url", type=_server_url, metavar="URL", help="the server, http://HOST:PORT")
    common.add_argument(
        "--api-key",
        default=None,
        metavar="KEY",
        help="the server's API key (default: the AUGSTREAM_API_KEY environment variable)",
    )
    _add_datasets(commands, common)
    _add_preview(commands, common)
    _add_bench(commands, common)


def _command(
    commands: Subcommands,
    common: argparse.ArgumentParser,
    name: str,
    summary: str,
    description: str,
    example: str,
) -> argparse.ArgumentParser:
    return commands.add_parser(
        name,
        parents=[common],
        help=summary,
        description=description,
        epilog=f"example:\n  {example}",
        # Keeps the example's line breaks.
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _add_datasets(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    datasets = _command(
        commands,
        common,
        "datasets",
        "list the datasets a server offers",
        "List the datasets a server offers: samples and classes with their counts.",
        "augstream datasets http://lab-server:8080",
    )
    datasets.add_argument("--json", action="store_true", help="print the server's JSON list")
    datasets.set_defaults(client_command=_datasets)


def _add_preview(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    preview = _command(
        commands,
        common,
        "preview",
        "write a PNG grid of augmented samples",
        "Write a PNG grid of augmented samples of a dataset, with their labels:\n"
        "the first batch of an epoch, exactly as a trainer with the same spec receives it.",
        "augstream preview http://lab-server:8080 cats -o grid.png \\\n"
        "      --set rotation_range=20 --set horizontal_flip=true --set 'zoom_range=[0.9,1.1]'",
    )
    preview.add_argument("dataset", metavar="DATASET", help="a dataset of the server")
    preview.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("preview.png"),
        metavar="PNG",
        help="where to write the grid (default: %(default)s)",
    )
    preview.add_argument(
        "--rows", type=_positive, default=4, metavar="N", help="rows of samples (default: 4)"
    )
    preview.add_argument(
        "--cols", type=_positive, default=8, metavar="N", help="samples per row (default: 8)"
    )
    preview.add_argument(
        "--seed", type=int, default=0, metavar="N", help="the same seed, the same grid (default: 0)"
    )
    preview.add_argument(
        "--epoch", type=int, default=0, metavar="N", help="whose first batch to show (default: 0)"
    )
    _add_target_size(preview, (128, 128))
    _add_set(
        preview,
        reserved={
            "dataset": "give it as DATASET",
            "target_size": "use --target-size",
            "seed": "use --seed",
            "batch_size": "a preview shows --rows x --cols samples",
            "start": "use --epoch",
        },
    )
    preview.set_defaults(client_command=_preview)


def _add_bench(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    bench = _command(
        commands,
        common,
        "bench",
        "measure how many images per second a server feeds this machine",
        "Measure how many augmented images per second a server streams to this machine:\n"
        f"--batches batches, after {_WARMUP_BATCHES} warm-up batches that are not counted.",
        "augstream bench http://lab-server:8080 cats --batches 100 \\\n"
        "      --set rotation_range=20 --set horizontal_flip=true",
    )
    bench.add_argument("dataset", metavar="DATASET", help="a dataset of the server")
    bench.add_argument(
        "--batches", type=_positive, default=50, metavar="N", help="batches to time (default: 50)"
    )
    bench.add_argument(
        "--batch-size", type=_positive, default=32, metavar="N", help="(default: 32)"
    )
    _add_target_size(bench, (224, 224))
    _add_set(
        bench,
        reserved={
            "dataset": "give it as DATASET",
            "target_size": "use --target-size",
            "batch_size": "use --batch-size",
            "epochs": "bench reads an endless stream",
        },
    )
    bench.add_argument("--json", action="store_true", help="print the figures as JSON")
    # Handled before parsing (augstream._cli): listed here so that --help shows it.
    bench.add_argument(
        "--compare",
        action="store_true",
        help="instead: compare augstream with Keras' ImageDataGenerator, tf.data and tf.data "
        "service on this machine (no URL; see augstream bench --compare --help)",
    )
    bench.set_defaults(client_command=_bench)


# --- running and failing ------------------------------------------------------------------


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
    if isinstance(exc, httpx.TransportError):
        reason = str(exc) or type(exc).__name__
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


# --- datasets -----------------------------------------------------------------------------


def _datasets(args: argparse.Namespace) -> None:
    with Client(args.url, api_key=args.api_key) as client:
        datasets = client.datasets()
    if args.json:
        print(json.dumps([d.model_dump(mode="json") for d in datasets], indent=2))
    elif not datasets:
        print(f"{args.url} offers no datasets (it streams uploaded arrays only)")
    else:
        print(_table(datasets))


def _table(datasets: Sequence[DatasetInfo]) -> str:
    rows = [("name", "samples", "classes")]
    rows += [(d.name, str(d.samples), _classes(d)) for d in datasets]
    name_width = max(len(row[0]) for row in rows)
    samples_width = max(len(row[1]) for row in rows)
    return "\n".join(
        f"{name:<{name_width}}  {samples:>{samples_width}}  {classes}".rstrip()
        for name, samples, classes in rows
    )


def _classes(dataset: DatasetInfo) -> str:
    names = sorted(dataset.class_indices, key=dataset.class_indices.__getitem__)
    counts = dataset.class_counts
    shown = [f"{n} {counts[n]}" if n in counts else n for n in names[:_CLASSES_SHOWN]]
    if len(names) > _CLASSES_SHOWN:
        shown.append(f"... ({len(names)} classes)")
    return ", ".join(shown)


# --- preview ------------------------------------------------------------------------------


def _preview(args: argparse.Namespace) -> None:
    with Client(args.url, api_key=args.api_key) as client:
        png = client.preview(
            rows=args.rows,
            cols=args.cols,
            epoch=args.epoch,
            **{
                **args.fields,
                "dataset": args.dataset,
                "target_size": args.target_size,
                "seed": args.seed,
            },
        )
    width, height = _png_size(png)
    try:
        args.output.write_bytes(png)
    except OSError as exc:
        raise AugstreamError(f"cannot write {args.output}: {exc.strerror or exc}") from exc
    print(
        f"wrote {args.output}: {width} x {height} pixels, up to {args.rows} rows x {args.cols} "
        f"columns of {args.dataset!r} (epoch {args.epoch}, seed {args.seed})"
    )


def _png_size(png: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk, which the format puts first."""
    if png[:8] != b"\x89PNG\r\n\x1a\n" or len(png) < 24:
        raise AugstreamError("the server answered the preview with something that is not a PNG")
    width, height = struct.unpack(">II", png[16:24])
    return int(width), int(height)


# --- bench --------------------------------------------------------------------------------


class _Progress:
    """A progress bar on ``out``, redrawn in place on a terminal; elsewhere (a log, a CI
    job) a line about every tenth of the way, so the log stays short."""

    def __init__(self, total: int, out: TextIO) -> None:
        self.total = total
        self.out = out
        self.tty = out.isatty()
        self.every = max(1, math.ceil(total / 10))

    def update(self, done: int, images_per_s: float) -> None:
        rate = f"{images_per_s:,.0f} images/s"
        if self.tty:
            filled = 30 * done // self.total
            bar = "#" * filled + "." * (30 - filled)
            # Padded: a shorter rate must cover the longer one drawn before it.
            self.out.write(f"\r[{bar}] {done}/{self.total} batches  {rate:<20}")
            if done == self.total:
                self.out.write("\n")
        elif done % self.every == 0 or done == self.total:
            self.out.write(f"bench: {done}/{self.total} batches, {rate}\n")
        self.out.flush()


def _bench(args: argparse.Namespace) -> None:
    with Client(args.url, api_key=args.api_key) as client:
        # Starting a stream retries an unreachable server for seconds, as a trainer wants;
        # a plain request fails at once, and names an unknown dataset or a missing key.
        client.dataset(args.dataset)
        fields = {
            **args.fields,
            "dataset": args.dataset,
            "target_size": args.target_size,
            "batch_size": args.batch_size,
        }
        started = time.perf_counter()
        with client.stream(**fields) as stream:
            first_batch_s = _warm_up(stream) - started
            figures = _measure(stream, args.batches)
            figures.update(first_batch_s=first_batch_s, reconnects=stream.reconnects)
    if args.json:
        print(json.dumps({"dataset": args.dataset, "url": args.url, **figures}, indent=2))
    else:
        print(_report(args, figures))


def _warm_up(stream: Stream) -> float:
    """Read the uncounted batches; return when the first one arrived."""
    stream.next_batch(timeout=_BATCH_TIMEOUT_S)
    first = time.perf_counter()
    for _ in range(_WARMUP_BATCHES - 1):
        stream.next_batch(timeout=_BATCH_TIMEOUT_S)
    return first


def _measure(stream: Stream, batches: int) -> dict[str, Any]:
    progress = _Progress(batches, sys.stderr)
    images = nbytes = 0
    start = time.perf_counter()
    for done in range(1, batches + 1):
        batch = stream.next_batch(timeout=_BATCH_TIMEOUT_S)
        images += len(batch.sample_ids)
        nbytes += _nbytes(batch)
        progress.update(done, images / max(time.perf_counter() - start, 1e-9))
    seconds = time.perf_counter() - start
    return {
        "batches": batches,
        "images": images,
        "seconds": seconds,
        "images_per_s": images / seconds,
        "batches_per_s": batches / seconds,
        "mb_per_s": nbytes / seconds / 1e6,
    }


def _nbytes(batch: Batch) -> int:
    labels = batch.y if isinstance(batch.y, list) else [batch.y]
    arrays = [batch.x, *labels, batch.sample_weight]
    return sum(a.nbytes for a in arrays if a is not None)


def _report(args: argparse.Namespace, figures: dict[str, Any]) -> str:
    height, width = args.target_size
    lines = [
        f"{args.dataset} from {args.url}: {figures['batches']} batches of {args.batch_size} "
        f"at {height}x{width}, {figures['images']} images in {figures['seconds']:.2f} s",
        f"  images/s     {figures['images_per_s']:10.1f}",
        f"  batches/s    {figures['batches_per_s']:10.2f}",
        f"  MB/s         {figures['mb_per_s']:10.1f}   (arrays as decoded here)",
        f"  first batch  {figures['first_batch_s']:10.3f} s (connect, plan and make it)",
    ]
    if figures["reconnects"]:
        lines.append(f"  the stream reconnected {figures['reconnects']} times")
    return "\n".join(lines)
