"""What counts as a plain config value: the checks pydantic's lax mode would skip, applied to every
section (the core's and every plugin's) by ``tc.core.config.Section``.
"""

from __future__ import annotations

import math
import types
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic_core import PydanticCustomError

PATH_SUFFIXES = ("_dir", "_file", "_path")
"""Keys ending so are filesystem paths: relative ones resolve against the YAML file's folder."""
PATH_LIST_SUFFIXES = ("_dirs", "_files", "_paths")
"""Keys ending so hold lists of paths (an empty one is refused like an empty path)."""


def field_types(annotation: Any) -> list[Any]:
    """The types a field accepts at its top level: unions flattened, ``Annotated`` unwrapped."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return field_types(get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        return [m for arg in get_args(annotation) for m in field_types(arg)]
    return [annotation]


def check_plain_value(value: Any, annotation: Any, path_key: bool) -> None:
    """Refuse what pydantic's lax mode would silently accept: a boolean for a number (``batch_size: true``
    is 1) and an empty or blank path (``Path("")`` is the working directory). Strings that spell numbers
    stay accepted: YAML reads ``1e-3`` as a string."""
    members = field_types(annotation)
    if isinstance(value, bool):
        if not any(m in (bool, Any) for m in members) and any(m in (int, float) for m in members):
            kind = "an integer" if int in members and float not in members else "a number"
            raise PydanticCustomError("bool_not_number", f"Input should be {kind}, not a boolean")
    elif isinstance(value, str):
        if (path_key or Path in members) and not value.strip():
            raise PydanticCustomError("empty_path", "the path is empty")
    elif isinstance(value, list | tuple):
        for member in members:
            if get_origin(member) in (list, tuple, set, frozenset):
                args = [a for a in get_args(member) if a is not Ellipsis] or [Any]
                for i, item in enumerate(value):
                    check_plain_value(item, args[min(i, len(args) - 1)], path_key)
                return


def non_finite(data: Any, loc: tuple[str, ...] = ()) -> tuple[tuple[str, ...], float] | None:
    """The key path and value of the first ``.inf`` / ``.nan`` anywhere in ``data``, plugin sections and
    free-form dicts (``deepspeed.config``) included."""
    if isinstance(data, float) and not math.isfinite(data):
        return loc, data
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, value in items:
        found = non_finite(value, (*loc, str(key)))
        if found is not None:
            return found
    return None
