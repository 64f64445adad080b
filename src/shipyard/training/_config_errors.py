"""Validation errors of an experiment as one line per problem, named by dotted path.

pydantic's locations are walked through the schema so that the tags of a discriminated union
disappear (``model.sklearn.type`` is ``model.type`` to the user) and an unknown field can list
the fields allowed where it sits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, get_args

from pydantic import BaseModel, ValidationError

__all__ = ["format_errors"]


def _unwrap(annotation: Any) -> Any:
    """The pydantic model, ``("dict", value type)`` or ``("union", {tag: model})`` inside an
    annotation (Optional too)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = getattr(annotation, "__origin__", None)
    args: tuple[Any, ...] = getattr(annotation, "__args__", ())
    if origin is dict and len(args) == 2:
        return ("dict", args[1])
    for arg in args:
        found = _unwrap(arg)
        if found is not None:
            return found
    return None


def _field_target(model: type[BaseModel], name: str) -> Any:
    """What :func:`_unwrap` finds under field ``name`` of ``model``; a discriminated union of
    models gives ``("union", {tag: model})``."""
    field = model.model_fields.get(name)
    if field is None:
        return None
    if isinstance(field.discriminator, str):
        members = [a for a in get_args(field.annotation) if isinstance(a, type)
                   and issubclass(a, BaseModel)]
        return ("union", {get_args(m.model_fields[field.discriminator].annotation)[0]: m
                          for m in members})
    return _unwrap(field.annotation)


def _walk(loc: Sequence[Any], root: type[BaseModel]) -> tuple[list[Any], list[str] | None]:
    """``loc`` without the tags pydantic puts after a discriminated union (``model.sklearn.type``
    is ``model.type`` to the user), and the field names allowed where its last part sits."""
    current: Any = root
    parent: Any = None
    clean: list[Any] = []
    parts = list(loc)
    i = 0
    while i < len(parts):
        part, parent = parts[i], current
        clean.append(part)
        if isinstance(current, tuple) and current[0] == "dict":
            current = _unwrap(current[1])  # a dict level: the key is free, go to the value type
        elif isinstance(current, type) and issubclass(current, BaseModel):
            current = _field_target(current, str(part))
        else:
            current = None
        if isinstance(current, tuple) and current[0] == "union":
            members = current[1]
            following = parts[i + 1] if i + 1 < len(parts) else None
            current = members.get(following) if isinstance(following, str) else None
            i += current is not None  # skip the tag
        i += 1
    if isinstance(parent, type) and issubclass(parent, BaseModel):
        return clean, list(parent.model_fields)
    return clean, None


def format_errors(err: ValidationError, where: str, overridden: Sequence[str] = (), *,
                  root: type[BaseModel] | None = None, prefix: Sequence[str] = ()) -> str:
    """One line per problem: dotted path, message, the bad value, what is allowed; problems
    under a path in ``overridden`` say they came from ``--set``.

    ``root`` is the model that was validated (default: the tabular
    :class:`~shipyard.training.config.Experiment`); ``prefix`` is where it sits in the
    experiment (``("model", "params")`` for an architecture's config), put before each path."""
    if root is None:
        from shipyard.training.config import Experiment

        root = Experiment
    lines = []
    for e in err.errors():
        loc, allowed = _walk([p for p in e["loc"]
                              if not (isinstance(p, str) and p.startswith(("function-",)))], root)
        loc = [*prefix, *loc]
        got = e.get("input", ...)
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown field" + (f"; allowed: {allowed}" if allowed else "")
        elif e["type"] == "missing":
            msg = "required field is missing"
        elif e["type"] == "union_tag_invalid":  # model.family: the discriminator's own path
            ctx = e.get("ctx", {})
            loc = [*loc, str(ctx.get("discriminator", "")).strip("'")]
            msg, got = f"must be one of {ctx.get('expected_tags')}", ctx.get("tag")
        path = ".".join(str(p) for p in loc) or "(top level)"
        line = f"{path}: {msg}" if loc else msg  # whole-model checks name their fields
        if e["type"] not in ("missing",) and got is not ... and not isinstance(got, dict):
            line += f" (got {got!r})"
        if any(path == k or path.startswith(k + ".") or k.startswith(path + ".")
               for k in overridden):
            line += " [from --set]"
        lines.append(line)
    return f"{where}: " + "\n  ".join(lines) if len(lines) == 1 else \
        f"{where}: {len(lines)} problems\n  " + "\n  ".join(lines)
