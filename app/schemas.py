"""Types shared by every domain's schemas: external ids and bounded free-form attributes."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import Path
from pydantic import AfterValidator, BeforeValidator, Field, StringConstraints

ID_PATTERN = r"^[A-Za-z0-9_.:@+\-]+$"
ID_MAX_LENGTH = 128
MAX_ATTRIBUTES = 50
MAX_ATTRIBUTE_BYTES = 4096
MAX_ATTRIBUTE_NAME = 64

ExternalId = Annotated[
    str, StringConstraints(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)
]
UserIdPath = Annotated[
    str,
    Path(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN, description="User id"),
]
ItemIdPath = Annotated[
    str,
    Path(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN, description="Item id"),
]


_INT64 = (-(2**63), 2**64 - 1)
_SURROGATE = re.compile("[\ud800-\udfff]")


def well_formed(text: Any) -> Any:
    """The text with any lone UTF-16 surrogate (valid JSON escapes, not Unicode) as U+FFFD;
    anything else unchanged (the type check comes after)."""
    if not isinstance(text, str):
        return text
    # A pair of escapes is one character once parsed: a surrogate left is a lone one.
    return _SURROGATE.sub("\ufffd", text)


def _plain(value: Any) -> Any:
    """A JSON value every store can hold: well-formed text, integers beyond 64 bits as floats."""
    if isinstance(value, str):
        return well_formed(value)
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return value
    if isinstance(value, int):
        return value if _INT64[0] <= value <= _INT64[1] else float(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {well_formed(str(k)): _plain(v) for k, v in value.items()}
    return value


#: Free text as clients send it, made well-formed (see :func:`well_formed`).
Text = Annotated[str, BeforeValidator(well_formed)]


def _bounded_attributes(value: dict[str, Any]) -> dict[str, Any]:
    import orjson

    value = _plain(value)
    try:
        size = len(orjson.dumps(value))
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise ValueError("attributes must be plain JSON values") from exc
    if size > MAX_ATTRIBUTE_BYTES:
        raise ValueError(
            f"attributes take {size} bytes as JSON; the limit is {MAX_ATTRIBUTE_BYTES}"
        )
    return value


AttributeName = Annotated[
    str,
    BeforeValidator(well_formed),
    StringConstraints(min_length=1, max_length=MAX_ATTRIBUTE_NAME),
]
# The count and the names are in the published schema (maxProperties, propertyNames); the size
# as JSON is checked after.
Attributes = Annotated[
    dict[AttributeName, Any],
    Field(max_length=MAX_ATTRIBUTES),
    AfterValidator(_bounded_attributes),
]
