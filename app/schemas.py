"""Types shared by every domain's schemas: external ids and bounded free-form attributes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path
from pydantic import AfterValidator, StringConstraints

ID_PATTERN = r"^[A-Za-z0-9_.:@+\-]+$"
ID_MAX_LENGTH = 128
MAX_ATTRIBUTES = 50
MAX_ATTRIBUTE_BYTES = 4096

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


def _bounded_attributes(value: dict[str, Any]) -> dict[str, Any]:
    import orjson

    if len(value) > MAX_ATTRIBUTES:
        raise ValueError(f"at most {MAX_ATTRIBUTES} attributes are allowed")
    for key in value:
        if not 1 <= len(key) <= 64:
            raise ValueError("attribute names must be 1 to 64 characters long")
    try:
        size = len(orjson.dumps(value))
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise ValueError("attributes must be plain JSON values") from exc
    if size > MAX_ATTRIBUTE_BYTES:
        raise ValueError(
            f"attributes take {size} bytes as JSON; the limit is {MAX_ATTRIBUTE_BYTES}"
        )
    return value


Attributes = Annotated[dict[str, Any], AfterValidator(_bounded_attributes)]
