"""``augstream serve``: serve folders of images, the datasets of a config file (buckets, web
servers), and arrays clients upload."""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import logging
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .siblings import SIBLING_OPTION

if TYPE_CHECKING:
    from .settings import Settings

__all__ = ["add_serve_arguments", "serve"]


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``augstream serve``."""
    parser.add_argument(
        "folders",
        nargs="*",
        type=Path,
        metavar="DIR",
        help="a folder of images (class subfolders for flow_from_directory); each becomes a "
        "dataset named after the folder. With none, the server streams uploaded arrays only",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="FILE",
        help="a TOML file of settings and datasets ([catalog.NAME] tables: url, layout, "
        "manifest, storage_options...); AUGSTREAM_* variables and options here win",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    parser.add_argument("--port", type=int, default=8080, help="port (default: %(default)s)")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="worker threads for decoding and augmentation (default: one per core the "
        "server may use: its CPU affinity and the container's quota)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=None,
        help="worker processes that make the batches' samples, each with its own GIL "
        "(default: one per 4 cores from 8 cores on, 0 below: the threads make them)",
    )
    parser.add_argument(
        "--servers",
        type=int,
        default=None,
        help="server processes on this box, on ports --port, --port + 1, ...; each gets its "
        "share of the threads, processes, caches and memory, and clients spread each stream "
        "over all of them (default: 1)",
    )
    parser.add_argument(SIBLING_OPTION, default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--worker-threads",
        type=int,
        default=None,
        help="threads in each worker process (default: --threads shared out over --processes)",
    )
    parser.add_argument(
        "--prefetch",
        type=int,
        default=None,
        help="batches each stream prepares ahead of its client (default: 4)",
    )
    parser.add_argument(
        "--on-corrupt",
        choices=["error", "skip"],
        default=None,
        help="an image that cannot be decoded ends the stream with an error (default), or is "
        "left out of its batch and reported in it",
    )
    parser.add_argument(
        "--api-key-file",
        type=Path,
        default=None,
        help="a file of API keys, one per line; clients must send one as a bearer token "
        "(keys can also come from AUGSTREAM_API_KEYS, a JSON list)",
    )
    parser.add_argument(
        "--upload-dir",
        type=Path,
        default=None,
        help="where uploaded arrays are kept (default: ~/.cache/augstream/uploads)",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="the least severe log lines written to stderr (default: %(default)s)",
    )


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _check_folders(app: Any, folders: list[Path]) -> None:
    """Warn, at start, of each folder that would be served with no images, saying why (a
    flat folder without class folders, most often) and what layout it needs."""
    from .catalog import DatasetUnavailableError

    catalog = app.state.augstream.catalog
    for folder in folders:
        dataset = catalog.get(Path(folder).resolve().name)
        try:
            reason = dataset.empty_reason()
        except DatasetUnavailableError as exc:
            reason = str(exc)
        if reason is not None:
            logging.getLogger("augstream").warning(
                "dataset %r (%s) has no images: %s", dataset.name, folder, reason
            )


def _tell_trainers(host: str, port: int) -> None:
    from .wheels import wheel_path

    shown = host if host not in ("0.0.0.0", "::") else "THIS-HOST"
    shown = f"[{shown}]" if ":" in shown else shown
    logging.getLogger("augstream").info(
        'trainers install the matching client with: pip install "augstream[keras] @ '
        'http://%s:%d%s"',
        shown,
        port,
        wheel_path(),
    )


def _bytes(count: int) -> str:
    if count == 0:
        return "off"
    return f"{count / (1 << 30):.1f} GiB" if count >= 1 << 30 else f"{count >> 20} MiB"


#: The settings a server derives from its cores unless they are given.
SIZED = ("threads", "processes", "worker_threads")


def sizing_line(settings: Settings, cores: str, given: Collection[str] = ()) -> str:
    """What the server sized itself to (``settings.sizing``, as ``GET /v1/server`` gives
    it), and from how many cores (``describe_cores``), for the start-up log: on a big box or
    in a pod, the first thing an operator checks. ``settings`` are one server process's
    (``siblings.share``'s with ``--servers``); ``given``: which of ``SIZED`` the command
    line, environment or config set."""
    from .settings import sizing

    figures = sizing(settings)
    threads, processes = figures["threads"], figures["processes"]
    each = f"{threads} {'thread' if threads == 1 else 'threads'}"
    if processes:
        per = figures["worker_threads"]
        plural = "process" if processes == 1 else "processes"
        each += f", {processes} worker {plural} of {per} "
        each += "thread each" if per == 1 else "threads each"
    else:
        each += " making the batches (no worker processes)"
    told = [name for name in SIZED if name in given]
    if told:
        each += f" ({', '.join(told)} as set, not from the cores)"
    servers = figures["servers"]
    who = f"{servers} server processes, each with" if servers > 1 else "this server process:"
    caches = (
        f"decoded images {_bytes(settings.image_cache_bytes)}, "
        f"file bytes {_bytes(settings.byte_cache_bytes)}, "
        f"finished batches {_bytes(settings.batch_cache_bytes)}"
    )
    budget = _bytes(settings.memory_budget_bytes)
    return f"sized for {cores}: {who} {each}; caches: {caches}; memory budget {budget}"


def serve(args: argparse.Namespace) -> int:
    """Run the server until interrupted."""
    from pydantic import ValidationError

    from .logs import configure_logging
    from .portable import restart_with
    from .server import DrainingServer, server_config
    from .settings import load_settings
    from .wiring import catalog_from

    overrides = {
        key: value
        for key, value in {
            "threads": args.threads,
            "processes": args.processes,
            "worker_threads": args.worker_threads,
            "servers": args.servers,
            "prefetch": args.prefetch,
            "upload_dir": args.upload_dir,
            "on_corrupt": args.on_corrupt,
        }.items()
        if value is not None
    }
    if args.api_key_file is not None:
        try:
            lines = args.api_key_file.read_text().splitlines()
        except OSError as exc:
            raise SystemExit(f"augstream serve: cannot read --api-key-file: {exc}") from None
        overrides["api_keys"] = [line.strip() for line in lines if line.strip()]
        if not overrides["api_keys"]:
            raise SystemExit(f"augstream serve: {str(args.api_key_file)!r} holds no keys")
    if args.folders:
        overrides["datasets"] = args.folders
    try:
        settings = load_settings(args.config, **overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'--' if e['loc'][0] in overrides else ''}{'.'.join(map(str, e['loc']))}: {e['msg']}"
            for e in exc.errors()
        )
        raise SystemExit(f"augstream serve: {problems}") from None
    except ValueError as exc:
        raise SystemExit(f"augstream serve: --config: {exc}") from None
    for folder in settings.datasets:
        if not folder.is_dir():
            raise SystemExit(f"augstream serve: {str(folder)!r} is not a folder")
    try:
        # Built here for its errors (two datasets with one name...); the app builds its own
        # from the same settings, as its worker processes do.
        catalog_from(settings)
    except ValueError as exc:  # two datasets with one name, a name clients cannot use...
        raise SystemExit(f"augstream serve: {exc}") from None
    # The portable numerics' switches are read when OpenCV and numpy load: start afresh with
    # them (a no-op when the environment already says what the settings ask).
    restart_with(settings.numerics)
    from .app import create_app
    from .cores import describe_cores
    from .siblings import Siblings, follow_parent, ports_of, share

    try:
        ports = ports_of(args.port, settings.servers, args.sibling_ports)
    except ValueError as exc:
        raise SystemExit(f"augstream serve: {exc}") from None
    first = args.sibling_ports is None
    given = settings.model_fields_set & set(SIZED)  # before share() sets them all
    settings = share(settings, len(ports)).model_copy(update={"sibling_ports": ports})
    configure_logging(args.log_level)
    if not first:
        follow_parent()
    elif not settings.api_keys and not _loopback(args.host):
        logging.getLogger("augstream").warning(
            "listening on %s without API keys: anyone who can reach this port can read the "
            "datasets; pass --api-key-file",
            args.host,
        )
    app = create_app(settings)
    siblings = Siblings(ports) if first and ports else None
    if first:
        _check_folders(app, settings.datasets)
        _tell_trainers(args.host, args.port)
        logging.getLogger("augstream").info("%s", sizing_line(settings, describe_cores(), given))
    if siblings is not None:
        siblings.start()
        logging.getLogger("augstream").info(
            "%d server processes on ports %d-%d", len(ports), ports[0], ports[-1]
        )
    config = server_config(app, args.host, args.port, args.log_level)
    # On SIGTERM streams end with go-away frames; their clients resume elsewhere (the
    # siblings are told at once, so that they drain together).
    # uvicorn re-raises the Ctrl-C it handled as KeyboardInterrupt: that was a clean stop.
    try:
        with contextlib.suppress(KeyboardInterrupt):
            DrainingServer(config, siblings.signal if siblings else None).run()
    finally:
        if siblings is not None:
            siblings.stop()
    return 0
