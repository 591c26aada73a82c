"""Frozen plan dataclasses to bytes and back: JSON, no pickle.

A stored ``ResponsePlan`` may sit in a Redis that several processes share,
so what is read back must never be able to run code: this codec builds
nothing but the classes of an explicit allow-list, from plain JSON (orjson),
each value checked against the field's annotation.

The walk is generic: ``dataclasses.fields`` and ``typing.get_type_hints``
(resolved once per class) give each field's type, and each type a pair of
functions, compiled once, that write and read it.  What the plan types use
is supported, nothing more (a new annotation of another kind fails loudly,
at import, with a TypeError naming it):

* ``str``, ``int``, ``float`` (an int stays an int), ``bool``, ``None``;
* allow-listed dataclasses, as JSON objects keyed by field name; a field
  still at its default is left out when that default is an atom (None, a
  bool, a number, a string, ``()``);
* ``tuple[X, ...]`` and fixed ``tuple[X, Y]``, as arrays;
* ``X | None``;
* a union of dataclasses (``MessageOutput | CallOutput``), the object
  tagged with its class name under ``"$"``: only the union's own members are
  accepted, any other tag is refused;
* ``dict[str, X]`` / ``Mapping[str, X]`` (read back as a ``dict``), and
  ``Any`` as a JSON value (checked on the way out: a tuple, a NaN or any
  non-JSON object would not come back equal, so it is refused).

The payload is ``{"v": 1, "<RootClass>": {...}}``, compact.  Any failure, in
``dump`` or ``load``, is a ``CodecError`` (a ``ValueError``) with a short
message naming where in the plan it was.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar, get_args, get_origin

import orjson

from mockai_tw.engine.plan import (
    CallOutput,
    ListedItem,
    MessageOutput,
    Pacing,
    ResponsePlan,
    TokenLogprob,
    ToolCallPlan,
    TopLogprob,
    Usage,
)
from mockai_tw.request.chat import FunctionDef, ResponseFormat
from mockai_tw.request.responses import InputItem, ResponsesRequest

__all__ = [
    "PLAN_TYPES",
    "VERSION",
    "Codec",
    "CodecError",
    "dump",
    "load",
]

#: The payload's format; ``load`` refuses any other.
VERSION = 1

#: Every class a stored response may hold: nothing else is ever built.
PLAN_TYPES: tuple[type, ...] = (
    ResponsePlan,
    Usage,
    Pacing,
    MessageOutput,
    CallOutput,
    ToolCallPlan,
    TokenLogprob,
    TopLogprob,
    ListedItem,
    InputItem,
    ResponsesRequest,
    FunctionDef,
    ResponseFormat,
)

T = TypeVar("T")
Encode = Callable[[Any], Any]
Decode = Callable[[Any], Any]

_MISSING: Any = object()
_TAG = "$"
# Defaults simple enough to leave out: equal means the same value.
_ATOMS = (type(None), bool, int, float, str)


class CodecError(ValueError):
    """A plan that cannot be written, or bytes that are not a plan."""


class _Bad(Exception):
    """A failure deep in the walk; each level on the way out adds its step."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.steps: list[str] = []

    def at(self, step: str) -> _Bad:
        self.steps.append(step)
        return self

    def where(self) -> str:
        return "".join(reversed(self.steps))


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _kind(value: Any) -> str:
    """A value's JSON kind, or its Python type's name."""
    if value is None:
        return "null"
    kinds = {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        list: "array",
        dict: "object",
    }
    return kinds.get(type(value), type(value).__name__)


def _expected(what: str, value: Any) -> _Bad:
    return _Bad(f"expected {what}, got {_kind(value)}")


def _first_failing(function: Callable[[Any], Any], items: Iterable[Any]) -> str:
    """The step of the first item ``function`` refuses (for error paths only)."""
    for i, item in enumerate(items):
        try:
            function(item)
        except _Bad:
            return f"[{i}]"
    return ""


# --- scalars and JSON values -------------------------------------------------


def _str(value: Any) -> Any:
    if type(value) is str:
        return value
    raise _expected("a string", value)


def _bool(value: Any) -> Any:
    if type(value) is bool:
        return value
    raise _expected("a boolean", value)


def _int(value: Any) -> Any:
    if type(value) is int:
        return value
    raise _expected("an integer", value)


def _float_out(value: Any) -> Any:
    kind = type(value)
    if kind is float:
        if math.isfinite(value):
            return value
        raise _Bad(f"{value!r} has no JSON form")
    if kind is int:
        return value
    raise _expected("a number", value)


def _float_in(value: Any) -> Any:
    # JSON has one number type: 1 read back stays the int it was written as.
    kind = type(value)
    if kind is float or kind is int:
        return value
    raise _expected("a number", value)


def _none(value: Any) -> Any:
    if value is None:
        return None
    raise _expected("null", value)


def _json_out(value: Any) -> Any:
    """``value`` if it is JSON that reads back equal, else a _Bad.

    Written and read again by orjson and compared, all in C: a tuple, a NaN,
    a dataclass or a datetime would come back as something else.  Only when
    that fails does a walk in Python say what it was.
    """
    try:
        same = orjson.loads(orjson.dumps(value)) == value
    except orjson.JSONEncodeError as error:
        _explain(value)
        raise _Bad(str(error)) from None
    if not same:
        _explain(value)
        raise _Bad("does not read back equal from JSON")
    return value


def _explain(value: Any) -> None:
    """Raise a _Bad naming what in ``value`` JSON would not give back."""
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is str or kind is int or kind is bool or item is None:
            continue
        if kind is dict:
            for key, inner in item.items():
                if type(key) is not str:
                    raise _Bad(f"object key {_short(key)} is not a string")
                stack.append(inner)
        elif kind is list:
            stack.extend(item)
        elif kind is float:
            if not math.isfinite(item):
                raise _Bad(f"{item!r} has no JSON form")
        else:
            raise _Bad(f"{kind.__name__!r} is not a JSON type")


def _json_in(value: Any) -> Any:
    # Whatever orjson read is JSON.
    return value


_SCALARS: dict[Any, tuple[Encode, Decode]] = {
    str: (_str, _str),
    bool: (_bool, _bool),
    int: (_int, _int),
    float: (_float_out, _float_in),
    type(None): (_none, _none),
    Any: (_json_out, _json_in),
}


# --- containers ----------------------------------------------------------------


def _optional(pair: tuple[Encode, Decode]) -> tuple[Encode, Decode]:
    encode, decode = pair

    def out(value: Any) -> Any:
        return None if value is None else encode(value)

    def back(value: Any) -> Any:
        return None if value is None else decode(value)

    return out, back


def _homogeneous(pair: tuple[Encode, Decode]) -> tuple[Encode, Decode]:
    encode, decode = pair

    if pair == _SCALARS[str]:
        # The common case, done without a call per item.
        def out(value: Any) -> Any:
            if type(value) is not tuple:
                raise _expected("a tuple", value)
            if all(type(item) is str for item in value):
                return value
            raise _Bad("expected a string").at(_first_failing(_str, value))

        def back(value: Any) -> Any:
            if type(value) is not list:
                raise _expected("an array", value)
            if all(type(item) is str for item in value):
                return tuple(value)
            raise _Bad("expected a string").at(_first_failing(_str, value))

        return out, back

    def out_any(value: Any) -> Any:
        if type(value) is not tuple:
            raise _expected("a tuple", value)
        try:
            return [encode(item) for item in value]
        except _Bad as bad:
            raise bad.at(_first_failing(encode, value)) from None

    def back_any(value: Any) -> Any:
        if type(value) is not list:
            raise _expected("an array", value)
        try:
            return tuple([decode(item) for item in value])
        except _Bad as bad:
            raise bad.at(_first_failing(decode, value)) from None

    return out_any, back_any


def _fixed(pairs: list[tuple[Encode, Decode]]) -> tuple[Encode, Decode]:
    size = len(pairs)

    def walk(value: Any, functions: list[Encode]) -> list[Any]:
        out = []
        for i, (function, item) in enumerate(zip(functions, value, strict=True)):
            try:
                out.append(function(item))
            except _Bad as bad:
                raise bad.at(f"[{i}]") from None
        return out

    encoders = [e for e, _ in pairs]
    decoders = [d for _, d in pairs]

    def out(value: Any) -> Any:
        if type(value) is not tuple or len(value) != size:
            raise _expected(f"a tuple of {size}", value)
        return walk(value, encoders)

    def back(value: Any) -> Any:
        if type(value) is not list or len(value) != size:
            raise _expected(f"an array of {size}", value)
        return tuple(walk(value, decoders))

    return out, back


def _mapping(pair: tuple[Encode, Decode]) -> tuple[Encode, Decode]:
    encode, decode = pair
    json_values = pair == _SCALARS[Any]

    def out(value: Any) -> Any:
        if type(value) is not dict:
            if not isinstance(value, Mapping):
                raise _expected("a mapping", value)
            value = dict(value)
        if json_values:
            return _json_out(value)
        result = {}
        for key, item in value.items():
            if type(key) is not str:
                raise _Bad(f"key {_short(key)} is not a string")
            try:
                result[key] = encode(item)
            except _Bad as bad:
                raise bad.at(f"[{_short(key)}]") from None
        return result

    def back(value: Any) -> Any:
        if type(value) is not dict:
            raise _expected("an object", value)
        if json_values:
            return value
        result = {}
        for key, item in value.items():
            try:
                result[key] = decode(item)
            except _Bad as bad:
                raise bad.at(f"[{_short(key)}]") from None
        return result

    return out, back


# --- dataclasses -----------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class _Field:
    name: str
    encode: Encode
    decode: Decode
    # Left out of the payload when the value equals it (_MISSING: never).
    omit: Any
    # Whether the constructor has a default to fill in.
    optional: bool
    # str, int or bool: a value of exactly this type is written and read as
    # it is, without a call (the bulk of the fields).
    exact: type | None


class _Class:
    """How one allow-listed dataclass is written and read."""

    def __init__(self, cls: type) -> None:
        self.cls = cls
        self.name = cls.__name__
        # Filled in by ``add`` after this is cached, so that a class
        # reachable from itself compiles.
        self.fields: list[_Field] = []
        self.by_name: dict[str, _Field] = {}
        self.required = 0

    def add(self, field: _Field) -> None:
        self.fields.append(field)
        self.by_name[field.name] = field
        self.required += not field.optional

    def encode(self, value: Any, tagged: bool = False) -> dict[str, Any]:
        if type(value) is not self.cls:
            raise _expected(self.name, value)
        out: dict[str, Any] = {_TAG: self.name} if tagged else {}
        for field in self.fields:
            name = field.name
            item = getattr(value, name)
            omit = field.omit
            if omit is not _MISSING and (
                item is omit
                or (
                    type(item) is type(omit)
                    and item == omit
                    # -0.0 == 0.0, and they are written differently.
                    and (type(item) is not float or repr(item) == repr(omit))
                )
            ):
                continue
            if type(item) is field.exact:
                out[name] = item
                continue
            try:
                out[name] = field.encode(item)
            except _Bad as bad:
                raise bad.at(f".{name}") from None
        return out

    def decode(self, value: Any, tagged: bool = False) -> Any:
        if type(value) is not dict:
            raise _expected(f"an object ({self.name})", value)
        kwargs = {}
        by_name = self.by_name
        required = 0
        for key, item in value.items():
            field = by_name.get(key)
            if field is None:
                if tagged and key == _TAG:
                    continue
                raise _Bad(f"unknown field {_short(key)} of {self.name}")
            if not field.optional:
                required += 1
            if type(item) is field.exact:
                kwargs[key] = item
                continue
            try:
                kwargs[key] = field.decode(item)
            except _Bad as bad:
                raise bad.at(f".{key}") from None
        if required != self.required:
            missing = next(
                f.name for f in self.fields if not f.optional and f.name not in value
            )
            raise _Bad(f"missing field {missing!r} of {self.name}")
        try:
            return self.cls(**kwargs)
        except (TypeError, ValueError) as error:
            raise _Bad(f"cannot build {self.name}: {error}") from None


def _tagged(members: list[_Class]) -> tuple[Encode, Decode]:
    by_type = {member.cls: member for member in members}
    by_name = {member.name: member for member in members}
    names = " | ".join(by_name)

    def out(value: Any) -> Any:
        member = by_type.get(type(value))
        if member is None:
            raise _expected(names, value)
        return member.encode(value, tagged=True)

    def back(value: Any) -> Any:
        if type(value) is not dict:
            raise _expected(f"an object ({names})", value)
        tag = value.get(_TAG)
        member = by_name.get(tag) if type(tag) is str else None
        if member is None:
            raise _Bad(f"class {_short(tag)} is not one of {names}")
        return member.decode(value, tagged=True)

    return out, back


def _hints(cls: type, names: Mapping[str, type]) -> dict[str, Any]:
    """The class's resolved annotations.

    ``names`` (the allow-list by name) stands in for what a module imports
    only under ``TYPE_CHECKING``; the module's own names come first.
    """
    module = vars(sys.modules[cls.__module__])
    try:
        return typing.get_type_hints(cls, globalns=module, localns={**names, **module})
    except NameError as error:
        raise TypeError(f"codec: {cls.__name__}: {error}") from None


class Codec(Generic[T]):
    """Bytes for values of ``root``, building only the ``allowed`` classes."""

    def __init__(self, root: type[T], allowed: Iterable[type]) -> None:
        self._allowed = {cls.__name__: cls for cls in allowed}
        if root not in self._allowed.values():
            raise TypeError(f"codec: {root.__name__} is not allowed")
        self._classes: dict[type, _Class] = {}
        self._root_name = root.__name__
        self._root = self._class(root)

    def _class(self, cls: type) -> _Class:
        found = self._classes.get(cls)
        if found is not None:
            return found
        if self._allowed.get(cls.__name__) is not cls:
            raise TypeError(f"codec: {cls.__qualname__} is not in the allow-list")
        compiled = self._classes[cls] = _Class(cls)
        hints = _hints(cls, self._allowed)
        for field in dataclasses.fields(cls):
            if not field.init:
                raise TypeError(f"codec: {cls.__name__}.{field.name} is not init")
            hint = hints[field.name]
            encode, decode = self._compile(hint, cls, field.name)
            omit = _MISSING
            if isinstance(field.default, _ATOMS) or field.default == ():
                omit = field.default
            optional = (
                field.default is not dataclasses.MISSING
                or field.default_factory is not dataclasses.MISSING
            )
            exact = hint if hint in (str, int, bool) else None
            compiled.add(_Field(field.name, encode, decode, omit, optional, exact))
        return compiled

    def _compile(self, hint: Any, cls: type, name: str) -> tuple[Encode, Decode]:
        scalar = _SCALARS.get(hint)
        if scalar is not None:
            return scalar
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            compiled = self._class(hint)
            return compiled.encode, compiled.decode
        origin, args = get_origin(hint), get_args(hint)
        if origin is tuple:
            if len(args) == 2 and args[1] is Ellipsis:
                return _homogeneous(self._compile(args[0], cls, name))
            return _fixed([self._compile(arg, cls, name) for arg in args])
        if origin in (dict, Mapping) and args and args[0] is str:
            return _mapping(self._compile(args[1], cls, name))
        if origin in (typing.Union, types.UnionType):
            members = [arg for arg in args if arg is not type(None)]
            optional = len(members) < len(args)
            if len(members) == 1:
                pair = self._compile(members[0], cls, name)
            elif all(
                isinstance(m, type) and dataclasses.is_dataclass(m) for m in members
            ):
                pair = _tagged([self._class(m) for m in members])
            else:
                raise TypeError(f"codec: {cls.__name__}.{name}: union {hint!r}")
            return _optional(pair) if optional else pair
        raise TypeError(f"codec: {cls.__name__}.{name}: unsupported type {hint!r}")

    def dump(self, value: T) -> bytes:
        """``value`` as compact JSON bytes; a CodecError if it cannot be."""
        try:
            body = self._root.encode(value)
            return orjson.dumps({"v": VERSION, self._root_name: body})
        except _Bad as bad:
            raise CodecError(
                f"cannot dump {self._root_name}{bad.where()}: {bad.message}"
            ) from None
        except orjson.JSONEncodeError as error:
            raise CodecError(f"cannot dump {self._root_name}: {error}") from None

    def load(self, data: bytes) -> T:
        """The value ``dump`` wrote; a CodecError for anything else."""
        name = self._root_name
        try:
            document = orjson.loads(data)
        except orjson.JSONDecodeError as error:
            raise CodecError(f"cannot load {name}: not JSON ({error})") from None
        if type(document) is not dict:
            raise CodecError(f"cannot load {name}: not a JSON object")
        version = document.get("v")
        if type(version) is not int or version != VERSION:
            raise CodecError(
                f"cannot load {name}: format version {_short(version)},"
                f" expected {VERSION}"
            )
        if len(document) != 2 or name not in document:
            raise CodecError(f"cannot load {name}: expected keys 'v' and {name!r}")
        try:
            value: T = self._root.decode(document[name])
        except _Bad as bad:
            raise CodecError(
                f"cannot load {name}{bad.where()}: {bad.message}"
            ) from None
        return value


#: Compiled at import: a plan field of a type the codec cannot carry fails here.
_PLANS = Codec(ResponsePlan, PLAN_TYPES)


def dump(plan: ResponsePlan) -> bytes:
    """A ResponsePlan as bytes (``{"v": 1, "ResponsePlan": {...}}``)."""
    return _PLANS.dump(plan)


def load(data: bytes) -> ResponsePlan:
    """The ResponsePlan ``dump`` wrote; ValueError (CodecError) on anything else."""
    return _PLANS.load(data)
