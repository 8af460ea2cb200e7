"""The one place JSON meets attrs: cattrs converters and readable validation errors.

Two converters share their hooks: ``converter`` (lenient on unknown keys, for our own
rows and outbound data) and ``strict`` (``forbid_extra_keys``, for everything that comes
from outside: frames, HTTP bodies, config files).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, TypeVar, get_args, get_origin

import attrs
import cattrs
import cattrs.v
import orjson
from cattrs.cols import list_structure_factory
from cattrs.preconf.orjson import make_converter

from halswarm.jsontypes import JSONObject, JSONValue, is_json_object

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "ConversionError",
    "converter",
    "describe_errors",
    "dumps",
    "load_json_row",
    "loads_object",
    "strict",
    "structure_strict",
    "unstructure",
]

T = TypeVar("T")


class ConversionError(ValueError):
    """Input could not be turned into the expected shape; ``problems`` names each one."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def _structure_json_object(value: object, _type: object) -> JSONObject:
    # Values came out of orjson, so they are JSON by construction: check the top only.
    if not is_json_object(value):
        raise TypeError(f"expected a JSON object, got {type(value).__name__}")
    return value


def _configure(conv: cattrs.Converter) -> cattrs.Converter:
    json_object_type = dict[str, object]  # the run-time form of JSONObject
    conv.register_structure_hook_func(lambda t: t == json_object_type, _structure_json_object)

    def _strict_str(value: object, _type: object) -> str:
        # cattrs' default would turn 123 into "123"; inbound data must be a real string.
        if not isinstance(value, str):
            raise TypeError(f"expected a string, got {type(value).__name__}")
        return value

    def _strict_int(value: object, _type: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"expected an integer, got {type(value).__name__}")
        return value

    def _strict_float(value: object, _type: object) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"expected a number, got {type(value).__name__}")
        return float(value)

    def _strict_bool(value: object, _type: object) -> bool:
        if not isinstance(value, bool):
            raise TypeError(f"expected true or false, got {type(value).__name__}")
        return value

    conv.register_structure_hook(str, _strict_str)
    conv.register_structure_hook(int, _strict_int)
    conv.register_structure_hook(float, _strict_float)
    conv.register_structure_hook(bool, _strict_bool)
    return conv


def _is_list(type_: object) -> bool:
    return get_origin(type_) is list


def _require_shapes(conv: cattrs.Converter) -> cattrs.Converter:
    """Make lists and objects reject values of another JSON type.

    cattrs structures a list from any iterable, so ``"origin_allowlist": "https://a.b"``
    would become a list of characters; and a number where an object belongs fails with
    an internal ``'int' object has no attribute 'keys'``. Untrusted input gets a check
    first and a message naming what was expected.
    """

    def list_factory(type_: type) -> Callable[[object, object], object]:
        inner = list_structure_factory(type_, conv)

        def structure_list(value: object, cls: object) -> object:
            if not isinstance(value, list):
                raise TypeError(f"expected a list, got {type(value).__name__}")
            return inner(value, cls)

        return structure_list

    def attrs_factory(type_: type) -> Callable[[object, object], object]:
        inner: Callable[[dict[str, object], object], object] = conv.gen_structure_attrs_fromdict(type_)

        def structure_object(value: object, cls: object) -> object:
            if not isinstance(value, dict):
                raise TypeError(f"expected a JSON object, got {type(value).__name__}")
            return inner(value, cls)

        return structure_object

    conv.register_structure_hook_factory(_is_list, list_factory)
    conv.register_structure_hook_factory(attrs.has, attrs_factory)
    return conv


converter: cattrs.Converter = _configure(make_converter(omit_if_default=False))
strict: cattrs.Converter = _require_shapes(_configure(make_converter(forbid_extra_keys=True, omit_if_default=False)))


def _format_exception(exc: BaseException, type_: object) -> str:
    """One problem in words an operator understands (cattrs' defaults name Python types)."""
    if isinstance(exc, KeyError):
        return "required key is missing"
    if isinstance(exc, cattrs.ForbiddenExtraKeysError):
        return f"unknown key(s): {', '.join(sorted(exc.extra_fields))}"
    origin = getattr(type_, "__origin__", None)
    if origin is Literal or (isinstance(exc, ValueError) and "not in literal" in str(exc)):
        allowed = ", ".join(str(a) for a in get_args(type_))
        return f"must be one of: {allowed}"
    if type_ == dict[str, object] or type_ == (dict[str, object] | None):
        return "expected a JSON object"
    if isinstance(exc, TypeError | ValueError) and str(exc):
        return str(exc)
    return cattrs.v.format_exception(exc, type_)  # type: ignore[arg-type]


def _key_path_first(line: str) -> str:
    """cattrs writes 'message @ $.a.b'; people read 'a.b: message' more easily."""
    message, sep, where = line.rpartition(" @ ")
    if not sep:
        return line
    key = where.removeprefix("$").lstrip(".") or "(top level)"
    return f"{key}: {message}"


def describe_errors(exc: BaseException, path: str = "$") -> list[str]:
    """Turn a cattrs error into one readable line per problem: ``key.path: problem``."""
    if isinstance(exc, cattrs.ClassValidationError | cattrs.IterableValidationError):
        lines = cattrs.transform_error(exc, path=path, format_exception=_format_exception)
    else:
        lines = [f"{exc} @ {path}"]
    return [_key_path_first(line) for line in lines]


def structure_strict(value: object, cls: type[T], path: str = "$") -> T:
    """Structure untrusted *value* into *cls*, rejecting unknown keys.

    Raises:
        ConversionError: with one line per problem, each naming its key path.
    """
    try:
        return strict.structure(value, cls)
    except (cattrs.BaseValidationError, ValueError, TypeError, KeyError) as exc:
        raise ConversionError(describe_errors(exc, path)) from None


def unstructure(value: object) -> JSONValue:
    """Attrs value (or list of them) to plain JSON-ready data."""
    result: JSONValue = converter.unstructure(value)
    return result


def dumps(value: object) -> bytes:
    """Serialise attrs values or plain data to JSON bytes (orjson)."""
    return orjson.dumps(converter.unstructure(value))


def loads_object(data: bytes | str, what: str = "body") -> JSONObject:
    """Parse JSON text that must be an object.

    Raises:
        ConversionError: the text is not JSON, or not an object.
    """
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ConversionError([f"{what} is not valid JSON: {exc}"]) from None
    if not is_json_object(value):
        raise ConversionError([f"{what} must be a JSON object, got {type(value).__name__}"])
    return value


def load_json_row(text: str | bytes | None, cls: type[T], label: str) -> tuple[T, list[str]]:
    """Read one of our own persisted JSON rows (a JSON object) back into *cls*.

    For state the supervisor restores at start: refusing to start over one corrupt row
    would stop everything that row belongs to, so an unreadable row gives the empty
    value and a problem line for the log instead.

    Args:
        text: the stored JSON text; None when nothing was stored yet.
        cls: what it holds (an attrs class, or e.g. ``dict[str, X]``); ``cls()`` is the
            empty value.
        label: names the row in the problem line.

    Returns:
        The value (empty when *text* is None or unreadable) and the problems found: one
        line ``"<label>: unreadable state, starting empty (...)"``, or none.
    """
    if text is None:
        return cls(), []
    try:
        raw = orjson.loads(text)
        if not is_json_object(raw):
            raise TypeError(f"expected a JSON object, got {type(raw).__name__}")
        value: T = converter.structure(raw, cls)
    except Exception as exc:
        # Bad JSON (a ValueError) or any cattrs error: ClassValidationError is an
        # ExceptionGroup, and a wrong shape can surface as TypeError or AttributeError.
        return cls(), [f"{label}: unreadable state, starting empty ({type(exc).__name__}: {exc})"]
    return value, []
