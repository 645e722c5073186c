"""``augstream datasets URL``: the datasets a server offers, as a table or JSON."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

from augstream.client import Client
from augstream_protocol.info import DatasetInfo

from .args import command

if TYPE_CHECKING:
    from .args import Subcommands

__all__ = ["add_datasets"]

#: Classes listed per dataset in the table (``--json`` has them all).
_CLASSES_SHOWN = 8


def add_datasets(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    datasets = command(
        commands,
        common,
        "datasets",
        "list the datasets a server offers",
        "List the datasets a server offers: samples and classes with their counts.",
        "augstream datasets http://lab-server:8080",
    )
    datasets.add_argument("--json", action="store_true", help="print the server's JSON list")
    datasets.set_defaults(client_command=_datasets)


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
