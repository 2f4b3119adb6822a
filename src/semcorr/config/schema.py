"""Typed schemas of the config nodes, checked before any work: one line per wrong value.

A schema is a ``TypedDict`` (``total=False``: a key left out of the config keeps the constructor's
default, so no default is written twice) whose annotations carry the valid range as
``annotated_types`` constraints, e.g. ``exponent: Annotated[float, Gt(0)]``. Pydantic checks the
values in strict mode (``"abc"`` is not a number, ``"no"`` not a boolean; an integer is a valid
number) and, unless the schema says otherwise (``extra="allow"`` for third-party targets such as
Lightning's Trainer), rejects keys the schema does not list.

A config node is matched to its schema by what it builds: its ``_target_`` (canonical
``module.QualName`` of the object Hydra would import) or, for the model configs of ``train.py``,
its ``runner``. :func:`register` files a schema under such a name; :func:`validate_config` walks
the composed config (not ``hydra``; an interpolation such as ``method.backbone: ${backbone.net}``
is checked where it points), checks every node that has a schema, and the root keys against a
root schema, and raises one :class:`~semcorr.errors.ConfigError` whose message has one line per
wrong key::

    method.exponent=-1: must be greater than 0 (valid: a number > 0)
    alphas[0]=-0.1: must be greater than 0 (valid: a list of at least 1 value, each a number in (0, 1])
    datamodule.batch_size=0: must be greater than or equal to 1 (valid: an integer >= 1)

A value that cannot be resolved (a missing ``???``, an interpolation to a key that does not exist)
is reported the same way, naming its key. Nodes whose target has no schema (a user's own method)
are left to their constructor.
"""

from __future__ import annotations

import functools
import types
import typing
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

import annotated_types as at
from hydra.utils import get_object
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException
from pydantic import AfterValidator, ConfigDict, TypeAdapter, ValidationError, with_config

from semcorr.errors import ConfigError

#: Pydantic settings of every schema: strict types, unknown keys rejected.
STRICT = ConfigDict(strict=True, extra="forbid")
#: Settings of schemas of third-party targets: listed keys checked, others passed on.
OPEN = ConfigDict(strict=True, extra="allow")

strict = with_config(STRICT)
open_ = with_config(OPEN)


@dataclass(frozen=True)
class Described:
    """``Annotated`` metadata giving the valid range in words where the constraints cannot
    (custom validators); pydantic ignores it."""

    text: str


def _odd(value: int) -> int:
    if value % 2 == 0:
        raise ValueError("must be odd")
    return value


def _ordered(value: list[float]) -> list[float]:
    if value[0] > value[1]:
        raise ValueError("the low end must not exceed the high end")
    return value


def _distinct(value: list[Any]) -> list[Any]:
    if len(set(value)) != len(value):
        raise ValueError("must not repeat a value")
    return value


PositiveInt = Annotated[int, at.Ge(1)]
NonNegativeInt = Annotated[int, at.Ge(0)]
PositiveFloat = Annotated[float, at.Gt(0)]
NonNegativeFloat = Annotated[float, at.Ge(0)]
Fraction = Annotated[float, at.Interval(gt=0, le=1)]
UnitInterval = Annotated[float, at.Interval(ge=0, le=1)]
OddInt = Annotated[int, at.Ge(1), AfterValidator(_odd), Described("an odd integer >= 1")]
#: [H, W] in pixels.
Size = Annotated[list[PositiveInt], at.Len(2, 2), Described("[H, W], two integers >= 1")]
#: [low, high] of a range of positive numbers.
PositiveRange = Annotated[
    list[PositiveFloat], at.Len(2, 2), AfterValidator(_ordered), Described("[low, high] with 0 < low <= high")
]


def list_of(item: Any, length: int | None = None, min_length: int | None = None, distinct: bool = False) -> Any:
    """``list[item]`` with an exact or a minimum length (and optionally no repeated value)."""
    meta: list[Any] = [at.Len(length, length)] if length is not None else []
    if min_length is not None:
        meta.append(at.MinLen(min_length))
    if distinct:
        meta.append(AfterValidator(_distinct))
    return Annotated[(list[item], *meta)] if meta else list[item]


# -- the registry ---------------------------------------------------------------------------------
_SCHEMAS: dict[str, Any] = {}


def register(name: str) -> Callable[[Any], Any]:
    """Class decorator filing a schema (a TypedDict) under a target's canonical
    ``module.QualName`` (or a runner's dotted path)."""

    def file(schema: Any) -> Any:
        _SCHEMAS[name] = schema
        return schema

    return file


def registered() -> dict[str, Any]:
    """Every registered schema by target name (tests check them against the constructors)."""
    return dict(_SCHEMAS)


def canonical(target: str) -> str:
    """``module.QualName`` of the object a ``_target_`` string imports (aliases such as
    ``semcorr.methods.hpf.HyperpixelFlow`` resolve to where the class is defined).

    Raises:
        ConfigError: the target cannot be imported.
    """
    try:
        obj = get_object(target)
    except Exception as err:  # noqa: BLE001 - Hydra raises ImportError or its own errors
        raise ConfigError(f"_target_ {target!r} cannot be imported ({err.__class__.__name__}); fix the config") from err
    return f"{obj.__module__}.{obj.__qualname__}"


def schema_for(node: DictConfig) -> Any | None:
    """The schema of a config node (by ``_target_``, else ``runner``), or None."""
    target = node.get("_target_") if "_target_" in node else None
    if isinstance(target, str):
        return _SCHEMAS.get(canonical(target))
    runner = node.get("runner") if "runner" in node else None
    return _SCHEMAS.get(runner) if isinstance(runner, str) else None


# -- words for types ------------------------------------------------------------------------------
def _bounds(meta: list[Any]) -> tuple[str | None, str | None]:
    """Lower and upper bound of number constraints as (``"> 0"``-like words)."""
    low = high = None
    for m in meta:
        if isinstance(m, at.Interval):
            parts = [(k, getattr(m, k)) for k in ("gt", "ge", "lt", "le") if getattr(m, k) is not None]
        elif isinstance(m, (at.Gt, at.Ge, at.Lt, at.Le)):
            kind = type(m).__name__.lower()
            parts = [(kind, getattr(m, kind))]
        else:
            continue
        for kind, value in parts:
            if kind in ("gt", "ge"):
                low = f"{'(' if kind == 'gt' else '['}{value:g}"
            else:
                high = f"{value:g}{')' if kind == 'lt' else ']'}"
    return low, high


def _number(base: str, meta: list[Any]) -> str:
    low, high = _bounds(meta)
    if low and high:
        return f"{base} in {low}, {high}"
    if low:
        return f"{base} {'>' if low[0] == '(' else '>='} {low[1:]}"
    if high:
        return f"{base} {'<' if high[-1] == ')' else '<='} {high[:-1]}"
    return base


def describe(annotation: Any) -> str:
    """The valid values of an annotation in words (``"a number > 0"``, ``"one of auto, csv"``)."""
    meta: list[Any] = []
    if typing.get_origin(annotation) is Annotated:
        annotation, *meta = typing.get_args(annotation)
        words = next((m.text for m in meta if isinstance(m, Described)), None)
        if words is not None:
            return words
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        return " or ".join(describe(a) for a in typing.get_args(annotation))
    if origin is Literal:
        return "one of " + ", ".join(str(v) for v in typing.get_args(annotation))
    if origin is list:
        (item,) = typing.get_args(annotation) or (Any,)
        lengths = [m for m in meta if isinstance(m, (at.Len, at.MinLen))]
        size = "values"
        for m in lengths:
            low = m.min_length
            high = getattr(m, "max_length", None)
            size = f"{low} values" if low == high else f"at least {low} value{'s' if low != 1 else ''}"
        distinct = ", all different" if any(isinstance(m, AfterValidator) and m.func is _distinct for m in meta) else ""
        return f"a list of {size}{distinct}, each {describe(item)}"
    if annotation is type(None):
        return "null"
    if annotation is bool:
        return "true or false"
    if annotation is int:
        return _number("an integer", meta)
    if annotation is float:
        return _number("a number", meta)
    if annotation is str:
        return "a string"
    return "any value"


# -- validation -----------------------------------------------------------------------------------
def show(value: Any) -> str:
    """A value as it would be written on the command line (``null``, ``true``, ``[1, 2]``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(show(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {show(v)}" for k, v in value.items()) + "}"
    return str(value) if value != "" else "''"


def _reason(error: Mapping[str, Any]) -> str:
    msg = str(error["msg"])
    if msg.startswith("Value error, "):
        return msg.removeprefix("Value error, ")
    words = {
        "a valid number": "a number", "a valid integer": "an integer", "a valid boolean": "true or false",
        "a valid string": "a string", "a valid list": "a list",
    }
    msg = msg.replace("Input should be ", "must be ").replace(" after validation", "")
    for old, new in words.items():
        msg = msg.replace(old, new)
    return msg.replace("List should have", "must have")


def _best(errors: list[Mapping[str, Any]]) -> Mapping[str, Any]:
    """Of the errors of one key (one per member of a union), the one about a range rather than a type."""
    ranged = [e for e in errors if not str(e["type"]).endswith("_type") and e["type"] != "none_required"]
    return (ranged or errors)[0]


@functools.cache
def _adapter(schema: Any) -> TypeAdapter:
    return TypeAdapter(schema)


def _hints(schema: Any) -> dict[str, Any]:
    return typing.get_type_hints(schema, include_extras=True)


def _extra(schema: Any) -> str:
    """A schema's pydantic ``extra`` setting (``"forbid"`` or ``"allow"``)."""
    return str(getattr(schema, "__pydantic_config__", STRICT).get("extra", "forbid"))


def check(values: Mapping[str, Any], schema: Any, path: str = "") -> list[str]:
    """The problems of plain ``values`` against ``schema``, one line each (empty: all valid).

    Args:
        values: key -> resolved plain value (lists, dicts, scalars).
        schema: a TypedDict of this module's kind.
        path: the node's path in the config (``"method"``; ``""`` at the root), prefixed to keys.
    """
    try:
        _adapter(schema).validate_python(dict(values))
        return []
    except ValidationError as err:
        errors = err.errors()
    hints = _hints(schema)
    by_key: dict[str, list[Mapping[str, Any]]] = {}
    for error in errors:
        by_key.setdefault(str(error["loc"][0]), []).append(error)
    problems = []
    prefix = f"{path}." if path else ""
    for key, key_errors in by_key.items():
        if key_errors[0]["type"] == "extra_forbidden":
            valid = f"valid keys: {', '.join(hints)}" if hints else "it takes no keys (its values come from the run)"
            problems.append(f"{prefix}{key} is not a key of {path or 'the config'}; {valid}")
            continue
        error = _best(key_errors)
        indices = [p for p in error["loc"][1:] if isinstance(p, int)]
        value = values[key]
        for i in indices:
            value = value[i]
        where = prefix + key + "".join(f"[{i}]" for i in indices)
        problems.append(f"{where}={show(value)}: {_reason(error)} (valid: {describe(hints[key])})")
    return problems


def resolved_values(node: DictConfig, path: str, only: Collection[str] | None = None) -> tuple[dict[str, Any], list[str]]:
    """The node's keys (but ``_target_``-like ones; with ``only``, just those keys) with their
    values resolved one by one, and the problems of those that cannot be resolved (named by key)."""
    values: dict[str, Any] = {}
    problems = []
    for key in node:
        key = str(key)
        if key.startswith("_") or (only is not None and key not in only):
            continue
        where = f"{path}.{key}" if path else key
        try:
            value = node[key]
            if isinstance(value, (DictConfig, ListConfig)):
                value = OmegaConf.to_container(value, resolve=True)
        except MissingMandatoryValue:
            problems.append(f"{where} is required (it is ???): set {where}=VALUE")
            continue
        except OmegaConfBaseException as err:
            problems.append(f"{where} cannot be resolved: {str(err).splitlines()[0]}")
            continue
        values[key] = value
    return values, problems


def _nodes(node: DictConfig | ListConfig, path: str) -> Iterator[tuple[str, DictConfig]]:
    """Every dict node below ``node`` (itself excluded) that is part of the tree, not reached
    through an interpolation, with its path; ``hydra`` is skipped."""
    keys = list(node.keys()) if isinstance(node, DictConfig) else list(range(len(node)))
    for key in keys:
        if path == "" and key == "hydra":
            continue
        if OmegaConf.is_interpolation(node, key) or OmegaConf.is_missing(node, key):
            continue
        child = node._get_node(key)  # noqa: SLF001 - the node itself, not its resolved value
        where = f"{path}[{key}]" if isinstance(key, int) else (f"{path}.{key}" if path else str(key))
        if isinstance(child, DictConfig) and not child._is_none():  # noqa: SLF001
            yield where, child
            yield from _nodes(child, where)
        elif isinstance(child, ListConfig) and not child._is_none():  # noqa: SLF001
            yield from _nodes(child, where)


def validate_config(cfg: DictConfig, root: Mapping[str, Any]) -> None:
    """Check a composed config before it is used.

    Args:
        cfg: the composed config (``evaluate.yaml`` / ``train.yaml``).
        root: schemas of nodes without a target, by path: ``{"": <root keys>, "datamodule": ...}``.

    Raises:
        ConfigError: one line per wrong value (key, value, why, the valid range).
    """
    def problems_of(node: DictConfig, path: str, schema: Any) -> list[str]:
        # an open schema checks its own keys only (the others are passed on, or are config groups)
        only = _hints(schema) if _extra(schema) == "allow" else None
        values, unresolved = resolved_values(node, path, only)
        return unresolved + check(values, schema, path)

    problems: list[str] = []
    for path, schema in root.items():
        node = OmegaConf.select(cfg, path) if path else cfg
        if isinstance(node, DictConfig):
            problems += problems_of(node, path, schema)
    for path, node in _nodes(cfg, ""):
        schema = schema_for(node) if path not in root else None
        if schema is not None:
            problems += problems_of(node, path, schema)
    if problems:
        raise ConfigError("\n".join(problems))
