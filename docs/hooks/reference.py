"""A MkDocs hook that writes the manual's generated references into their pages.

A page asks for a reference with a marker line; the hook replaces it, at build time, with
markdown made from the code itself, so the manual cannot drift from it:

- ``<!-- generated: spec-fields -->``: every field of ``augstream_protocol.spec.StreamSpec``
  (name, type, default, constraints, description: the docstring under the field), grouped by
  the model it comes from, then the small models its fields hold;
- ``<!-- generated: cli -->``: every subcommand of ``augstream`` and every argument, from the
  argparse parsers (``augstream._cli._parser``);
- ``<!-- generated: http-routes -->``: every route of the server's OpenAPI schema, with its
  summary, from an app built by ``augstream_service.app.create_app``.

Nothing generated is committed; a marker this hook does not know fails the build.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import types
import typing
from typing import Any

import annotated_types
from pydantic import BaseModel, TypeAdapter
from pydantic.fields import FieldInfo

__all__ = ["cli_markdown", "http_markdown", "on_page_markdown", "spec_markdown"]

MARKER = re.compile(r"^<!-- generated: ([a-z-]+) -->$", re.MULTILINE)


def on_page_markdown(markdown: str, **_: Any) -> str:
    """MkDocs' page event: replace each marker line with its reference."""

    def generated(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in GENERATORS:
            raise ValueError(f"unknown reference {name!r}: expected one of {sorted(GENERATORS)}")
        return GENERATORS[name]()

    return MARKER.sub(generated, markdown)


# --- the stream spec ---------------------------------------------------------------------


def spec_markdown() -> str:
    """Every field of ``StreamSpec``, one table per model it comes from, then the models that
    its fields hold (``start``, ``shard``, ``arrays``, ``stats``)."""
    from augstream_protocol.augmentation import Augmentation
    from augstream_protocol.fields import ArrayRefs, Position, Shard, StatsRefs
    from augstream_protocol.selection import Selection
    from augstream_protocol.spec import StreamSpec

    groups: list[tuple[str, type[BaseModel]]] = [
        ("What is read and how it is batched", Selection),
        ("How each sample is transformed", Augmentation),
    ]
    sections = []
    for title, model in groups:
        names = [n for n in StreamSpec.model_fields if n in model.model_fields]
        sections.append(_model_section(title, model, StreamSpec, names))
    own = [n for n in StreamSpec.model_fields if not any(n in m.model_fields for _, m in groups)]
    if own:
        sections.append(_model_section("Other fields", StreamSpec, StreamSpec, own))
    held: list[tuple[str, type[BaseModel]]] = [
        ("start", Position),
        ("shard", Shard),
        ("arrays", ArrayRefs),
        ("stats", StatsRefs),
    ]
    for field, model in held:
        names = list(model.model_fields)
        sections.append(_model_section(f"`{field}`", model, model, names, prefix=f"{field}."))
    return "\n".join(sections)


def _model_section(
    title: str, model: type[BaseModel], owner: type[BaseModel], names: list[str], prefix: str = ""
) -> str:
    """A model's fields as a table; each row's anchor is the field's name (``prefix`` first:
    ``shard.index``)."""
    doc = " ".join((model.__doc__ or "").split())
    lines = [
        f"## {title}: `{model.__name__}` {{#{_anchor(model)}}}",
        "",
        _markdown_text(doc),
        "",
        "| field | type and constraints | default | description |",
        "|---|---|---|---|",
    ]
    for name in names:
        field = owner.model_fields[name]
        kind, constraints = _type_text(field.annotation)
        constraints = _constraints(field.metadata) + constraints
        if constraints:
            kind += f"<br><small>{', '.join(constraints)}</small>"
        lines.append(
            f'| <span id="{prefix}{name}"></span>`{prefix}{name}` | {kind} | {_default(field)} '
            f"| {_markdown_text(field.description or '')} |"
        )
    return "\n".join(lines) + "\n"


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    as_json = TypeAdapter(typing.cast(Any, field.annotation)).dump_python(value, mode="json")
    return f"`{json.dumps(as_json)}`"


def _type_text(annotation: Any) -> tuple[str, list[str]]:
    """A field's type as text, and the constraints found inside it (on tuple or list items
    they read "items ...")."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        kind, inner = _type_text(args[0])
        metadata: list[Any] = []
        for item in args[1:]:
            metadata.extend(item.metadata if isinstance(item, FieldInfo) else [item])
        return kind, _constraints(metadata) + inner
    if origin in (typing.Union, types.UnionType):
        parts = [_type_text(arg) for arg in args]
        return " \\| ".join(p[0] for p in parts), _unique(c for p in parts for c in p[1])
    if origin is typing.Literal:
        return " \\| ".join(f"`{json.dumps(arg)}`" for arg in args), []
    if origin in (tuple, list):
        parts = [_type_text(arg) for arg in args]
        kind = f"{origin.__name__}[{', '.join(p[0] for p in parts)}]"
        items = _unique(c for p in parts for c in p[1])
        return kind, [f"items {', '.join(items)}"] if items else []
    if annotation is type(None):
        return "null", []
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"[{annotation.__name__}](#{_anchor(annotation)})", []
    return getattr(annotation, "__name__", str(annotation)), []


_BOUNDS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}


def _constraints(metadata: list[Any]) -> list[str]:
    found = []
    for item in metadata:
        for attr, sign in _BOUNDS.items():
            if isinstance(getattr(item, attr, None), int | float):
                found.append(f"{sign} {_number(getattr(item, attr))}")
        if isinstance(item, annotated_types.MinLen):
            found.append(f"at least {item.min_length} long")
        if isinstance(item, annotated_types.MaxLen):
            found.append(f"at most {item.max_length} long")
        pattern = getattr(item, "pattern", None)
        if isinstance(pattern, str):
            found.append(f"matches `{pattern}`")
    return found


def _anchor(model: type[BaseModel]) -> str:
    return f"model-{model.__name__.lower()}"


def _number(value: float) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and value >= 2**16 and value & (value - 1) == 0:
        return f"2^{value.bit_length() - 1}"
    return str(value)


def _unique(items: typing.Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _markdown_text(text: str) -> str:
    """A docstring's or a help text for a table cell: RST's double backticks become
    markdown's single ones, and outside code pipes and asterisks are escaped."""
    text = " ".join(text.split()).replace("``", "`")
    pieces = text.split("`")
    return "`".join(p if i % 2 else _escaped(p) for i, p in enumerate(pieces))


def _escaped(text: str) -> str:
    return text.replace("|", "\\|").replace("*", "\\*")


# --- the command line --------------------------------------------------------------------


def cli_markdown() -> str:
    """Every subcommand of ``augstream``, its usage and every argument with its help."""
    from augstream._cli import _parser

    parser = _parser()
    commands = _subcommands(parser)
    lines = ["| command | what it does |", "|---|---|"]
    for choice in _subparsers(parser)._choices_actions:
        lines.append(f"| [`{choice.dest}`](#{choice.dest}) | {_markdown_text(choice.help or '')} |")
    sections = ["\n".join(lines) + "\n"]
    for name, command in commands.items():
        if any(action.dest == "rest" for action in command._actions):
            raise RuntimeError("the CLI reference needs the server installed: '.[service]'")
        sections.append(_command_section(name, command))
    return "\n".join(sections)


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction[Any]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    raise ValueError(f"{parser.prog} has no subcommands")


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Each subcommand of ``parser`` by name."""
    return dict(_subparsers(parser).choices)


def arguments(command: argparse.ArgumentParser) -> list[argparse.Action]:
    """The arguments of a subcommand that the reference lists (all but ``--help``)."""
    return [a for a in command._actions if not isinstance(a, argparse._HelpAction)]


USAGE_WIDTH = 88


def _command_section(name: str, command: argparse.ArgumentParser) -> str:
    formatter = command._get_formatter()
    # A fixed width, not the terminal's: the page is the same wherever it is built.
    usage_formatter = argparse.HelpFormatter(command.prog, width=USAGE_WIDTH)
    usage_formatter.add_usage(
        command.usage, command._actions, command._mutually_exclusive_groups, prefix=""
    )
    usage = usage_formatter.format_help().strip()
    lines = [
        f"## `augstream {name}` {{#{name}}}",
        "",
        _markdown_text(command.description or ""),
        "",
        "```text",
        usage,
        "```",
        "",
        "| argument | default | what it does |",
        "|---|---|---|",
    ]
    for action in arguments(command):
        text = _markdown_text(formatter._expand_help(action)) if action.help else ""
        lines.append(f"| `{_argument(action)}` | {_argument_default(action)} | {text} |")
    return "\n".join(lines) + "\n"


def _argument(action: argparse.Action) -> str:
    choices = "{" + ",".join(map(str, action.choices)) + "}" if action.choices else None
    metavar = action.metavar or choices or action.dest.upper()
    if not action.option_strings:
        return f"{metavar}..." if action.nargs in ("*", "+") else str(metavar)
    names = ", ".join(action.option_strings)
    if action.nargs == 0:
        return names
    shown = " ".join(metavar) if isinstance(metavar, tuple) else metavar
    return f"{names} {shown}"


def _argument_default(action: argparse.Action) -> str:
    default = action.default
    if default is None or default is False or default == argparse.SUPPRESS or default == {}:
        return ""
    if isinstance(default, tuple | list):
        return f"`{' '.join(map(str, default))}`"
    return f"`{default}`"


# --- the HTTP API ------------------------------------------------------------------------


def http_markdown() -> str:
    """Every route of the server's OpenAPI schema and its summary, in the schema's order."""
    from augstream_service.app import create_app
    from augstream_service.settings import Settings

    with tempfile.TemporaryDirectory() as uploads:
        schema = create_app(Settings(upload_dir=uploads)).openapi()
    lines = ["| method | path | what it answers |", "|---|---|---|"]
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            summary = _markdown_text(operation.get("summary", ""))
            lines.append(f"| `{method.upper()}` | `{path}` | {summary} |")
    return "\n".join(lines) + "\n"


GENERATORS = {"spec-fields": spec_markdown, "cli": cli_markdown, "http-routes": http_markdown}
