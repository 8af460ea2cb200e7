"""Typed aliases for JSON values, so strict typing survives the wire and the database.

For the type checker the aliases are the precise recursive JSON type. At run time they
are plain ``dict[str, object]`` / ``object``, which cattrs knows how to structure
(keys checked, values passed through: they came out of ``orjson.loads``, so they are
JSON by construction).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias, TypeGuard

__all__ = ["JSONObject", "JSONValue", "is_json_object"]

if TYPE_CHECKING:
    JSONValue: TypeAlias = "bool | int | float | str | list[JSONValue] | dict[str, JSONValue] | None"
    JSONObject: TypeAlias = dict[str, JSONValue]
else:
    JSONValue = object
    JSONObject = dict[str, object]


def is_json_object(value: object) -> TypeGuard[JSONObject]:
    """Return True when *value* is a dict with string keys (a JSON object).

    Only the top level is checked: values that came out of ``orjson.loads`` are
    JSON by construction, so their nested values need no second walk.
    """
    return isinstance(value, dict) and all(isinstance(k, str) for k in value)
