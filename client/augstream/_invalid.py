"""Bad spec values told one way, whoever caught them: the field, the value given, what the
field allows, and where it was caught (the client, before any request, or the server); a
misspelled field name or choice gets a "did you mean".

Both sides validate with the protocol's ``StreamSpec``: the client turns pydantic's errors
into ``InvalidSpecError`` here, and a server's 422 lists the same errors (``loc``, ``msg``),
whose values the client looks up in the request it sent (the server does not echo them).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
import types
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from augstream_protocol.spec import StreamSpec

from ._exceptions import InvalidSpecError

__all__ = ["allowed", "invalid_spec", "spec_from", "suggest", "unknown_keywords"]

#: What a value may be, by type.
_KINDS = {bool: "true or false", int: "an integer", float: "a number", str: "text"}
_CHOICE = re.compile(r"'([^']*)'")
_DIGEST = "^[0-9a-f]{64}$"


def spec_from(fields: Mapping[str, Any]) -> StreamSpec:
    """``StreamSpec`` of ``fields``; ``InvalidSpecError`` (caught by the client) if any is
    wrong."""
    try:
        return StreamSpec.model_validate(dict(fields))
    except ValidationError as exc:
        where = "caught by the client, before any request"
        raise invalid_spec(exc.errors(), fields, where) from None


def _constraints(metadata: Iterable[Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for item in metadata:
        if isinstance(item, FieldInfo):  # Annotated[int, Field(ge=1)] inside a tuple
            found.update(_constraints(item.metadata))
        elif dataclasses.is_dataclass(item):  # annotated_types' Ge, Le, MinLen...
            values = {f.name: getattr(item, f.name) for f in dataclasses.fields(item)}
            found.update({k: v for k, v in values.items() if v is not None})
        elif hasattr(item, "__dict__"):  # pydantic's own, for ``pattern``
            found.update({k: v for k, v in vars(item).items() if v is not None})
    return found


def _number(value: Any) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def _bounds(metadata: Iterable[Any], unit: str = "items") -> str:
    found = _constraints(metadata)
    words = []
    for key, word in (("ge", "from"), ("gt", "above"), ("le", "to"), ("lt", "below")):
        if key in found:
            words.append(f"{word} {_number(found[key])}")
    if "min_length" in found or "max_length" in found:
        low, high = found.get("min_length", 0), found.get("max_length")
        words.append(f"of {low} to {high} {unit}" if high else f"of at least {low} {unit}")
    return " ".join(words)


def _describe(annotation: Any, metadata: Iterable[Any] = ()) -> str:
    origin = get_origin(annotation)
    if origin is Annotated:
        base, *more = get_args(annotation)
        return _describe(base, [*metadata, *more])
    if origin is Literal:
        return "one of " + ", ".join(repr(choice) for choice in get_args(annotation))
    if origin in (Union, types.UnionType):
        options = [a for a in get_args(annotation) if a is not type(None)]
        if int in options and float in options:
            options.remove(int)  # an integer is a number
        text = " or ".join(_describe(a) for a in options)
        return f"{text}, or unset" if type(None) in get_args(annotation) else text
    if origin is tuple:
        parts = [_describe(a) for a in get_args(annotation)]
        return f"a pair, each {parts[0]}" if len(set(parts)) == 1 else f"({', '.join(parts)})"
    if origin is list:
        text = f"a list, each {_describe(get_args(annotation)[0])}"
        bounds = _bounds(metadata)
        return f"{text}; {bounds}" if bounds else text
    if _is_model(annotation):
        inner = ", ".join(
            f"{name}: {_describe(f.annotation, f.metadata)}"
            for name, f in annotation.model_fields.items()
        )
        return (
            "{" + inner + "}"
            if len(inner) < 100
            else "an object of " + ", ".join(annotation.model_fields)
        )
    pattern = _constraints(metadata).get("pattern")
    if pattern == _DIGEST:
        return "a SHA-256 digest (64 lowercase hex digits)"
    kind = _KINDS.get(annotation, getattr(annotation, "__name__", str(annotation)))
    bounds = _bounds(metadata, "characters")
    if pattern is not None:
        bounds = f"{bounds} matching {pattern}".strip()
    return f"{kind} {bounds}".strip()


def allowed(field: str) -> str | None:
    """What the spec field ``field`` accepts, in words (None for no such field)."""
    info = StreamSpec.model_fields.get(field)
    return None if info is None else _describe(info.annotation, info.metadata)


def suggest(word: str, choices: Iterable[str]) -> str:
    """``" - did you mean 'x'?"`` for the choice closest to ``word``, or nothing."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" - did you mean {close[0]!r}?" if close else ""


def unknown_keywords(function: str, given: Iterable[str], known: Iterable[str]) -> InvalidSpecError:
    """An ``InvalidSpecError`` (also a ``TypeError``) for keywords ``function`` does not take."""
    names = list(known)
    wrong = sorted(given)
    hints = "; ".join(f"{name!r}{suggest(name, names)}" for name in wrong)
    return _UnknownKeywordError(
        f"{function} got unexpected keyword arguments: {hints}",
        fields=tuple(wrong),
        caught_by="client",
    )


class _UnknownKeywordError(InvalidSpecError, TypeError):
    """A keyword the function does not take: what Python raises as ``TypeError``."""


def _shown(value: Any) -> str:
    text = repr(json.loads(json.dumps(value, default=str)))
    return text if len(text) <= 80 else text[:77] + "..."


def _value(body: Any, loc: list[Any]) -> tuple[bool, Any]:
    # A server's own checks name nested fields with dots (``stats.mean``).
    parts = [p for part in loc for p in (part.split(".") if isinstance(part, str) else [part])]
    for part in parts:
        keyed = isinstance(body, Mapping) and part in body
        indexed = isinstance(body, list | tuple) and isinstance(part, int) and part < len(body)
        if not (keyed or indexed):
            return False, None
        body = body[part]
    return True, body


def _model_at(loc: list[str]) -> type[BaseModel] | None:
    """The model whose field ``loc[-1]`` would be."""
    model: Any = StreamSpec
    for part in loc[:-1]:
        info = model.model_fields.get(part) if _is_model(model) else None
        if info is None:
            return None
        model = next(
            (a for a in (info.annotation, *get_args(info.annotation)) if _is_model(a)), None
        )
    return model if _is_model(model) else None


def _is_model(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


def _message(loc: list[Any], error: dict[str, Any]) -> str:
    text = str(error["msg"]).removeprefix("Value error, ")
    # A nested model's field says which (arrays.x); an index or a union member does not.
    inner = loc[1] if len(loc) > 1 and isinstance(loc[1], str) else None
    model = _model_at(loc[:2]) if inner is not None else None
    return f"{inner}: {text}" if model is not None and inner in model.model_fields else text


def _problem(loc: list[Any], errors: list[dict[str, Any]], body: Any) -> str:
    field = ".".join(str(part) for part in loc)
    if errors[0].get("type") == "extra_forbidden":
        model = _model_at(loc)
        known = list(model.model_fields) if model is not None else []
        return f"{field}: not a field of the spec{suggest(str(loc[-1]), known)}"
    messages = list(dict.fromkeys(_message(list(e.get("loc", loc)), e) for e in errors))
    if not loc:
        return "; ".join(messages)
    found, value = _value(body, loc)
    notes = [f"got {_shown(value)}"] if found and "got" not in messages[0] else []
    hint = ""
    kind = errors[0].get("type")
    if kind == "literal_error":  # the message lists the choices
        hint = suggest(value, _CHOICE.findall(messages[0])) if isinstance(value, str) else ""
    elif kind != "value_error" and len(loc) == 1 and allowed(str(loc[0])):
        # (A check's own message says what it expected: the type's range would only blur it.)
        notes.append(f"allowed: {allowed(str(loc[0]))}")
    detail = f" ({'; '.join(notes)})" if notes else ""
    return f"{field}: {' or '.join(messages)}{detail}{hint}"


def _named(text: str) -> list[str]:
    return [name for name in StreamSpec.model_fields if re.search(rf"\b{name}\b", text)]


def invalid_spec(errors: list[Any], body: Any, where: str) -> InvalidSpecError:
    """The ``InvalidSpecError`` for pydantic-style ``errors`` (``loc``, ``msg``, ``type``)
    about the spec ``body``, caught ``where``."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for given in errors:
        loc = [part for part in given.get("loc", ()) if part != "body"]
        if loc[:1] == ["spec"] and len(loc) > 1 and isinstance(body, Mapping):
            loc = loc[1:]  # a fit's spec (POST /v1/stats): its fields are the spec's
            body = body.get("spec", body)
        error = {**given, "loc": loc}
        # A field's value is one thing, however many parts of it are wrong.
        key = tuple(loc[:1]) if loc[:1] and loc[0] in StreamSpec.model_fields else tuple(loc)
        if error.get("type") == "extra_forbidden":
            key = tuple(loc)
        groups.setdefault(key, []).append(error)
    problems = {loc: _problem(list(loc), group, body) for loc, group in groups.items()}
    text = "; ".join(problems.values())
    # A check of several fields names them in its message.
    named = [name for loc, problem in problems.items() if not loc for name in _named(problem)]
    fields = tuple(dict.fromkeys([str(loc[0]) for loc in groups if loc] + named))
    caught_by = "client" if where.startswith("caught by the client") else "server"
    return InvalidSpecError(
        f"invalid stream spec: {text}; {where}", fields=fields, caught_by=caught_by
    )
