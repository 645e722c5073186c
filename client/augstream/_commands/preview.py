"""``augstream preview URL DATASET``: a PNG grid of augmented samples, written to a file."""

from __future__ import annotations

import argparse
import struct
from pathlib import Path
from typing import TYPE_CHECKING

from augstream._exceptions import AugstreamError
from augstream.client import Client

from .args import add_set, add_target_size, command, positive

if TYPE_CHECKING:
    from .args import Subcommands

__all__ = ["add_preview"]


def add_preview(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    preview = command(
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
        "--rows", type=positive, default=4, metavar="N", help="rows of samples (default: 4)"
    )
    preview.add_argument(
        "--cols", type=positive, default=8, metavar="N", help="samples per row (default: 8)"
    )
    preview.add_argument(
        "--seed", type=int, default=0, metavar="N", help="the same seed, the same grid (default: 0)"
    )
    preview.add_argument(
        "--epoch", type=int, default=0, metavar="N", help="whose first batch to show (default: 0)"
    )
    add_target_size(preview, (128, 128))
    add_set(
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
