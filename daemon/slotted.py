"""Fast builders for the frozen, slotted dataclasses made on every tick (runs, ticks).

A frozen dataclass's own __init__ and `dataclasses.replace` set each field through
`object.__setattr__`; these builders set the slots directly, for about half the cost.
They are generated once per class from its own field names, and fall back to the
dataclass's own machinery for a class they cannot serve (no slots, or a __post_init__).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def _fields(cls: type[Any]) -> list[dataclasses.Field[Any]] | None:
    fields = list(dataclasses.fields(cls))
    names = {f.name for f in fields}
    if set(getattr(cls, "__slots__", ())) != names or hasattr(cls, "__post_init__"):
        return None
    return fields


def _compile(
    cls: type[Any], signature: str, value_of: Callable[[str], str], extra: dict[str, Any]
) -> Any:
    """`def make(<signature>)` that creates a `cls` and sets every slot to `value_of(name)`.
    Generated names start with "__" so that they never clash with a field's name."""
    names = [f.name for f in dataclasses.fields(cls)]
    namespace: dict[str, Any] = {"__new": object.__new__, "__cls": cls, **extra}
    namespace.update({f"__set_{name}": getattr(cls, name).__set__ for name in names})
    body = "".join(f"    __set_{name}(__obj, {value_of(name)})\n" for name in names)
    exec(f"def make({signature}):\n    __obj = __new(__cls)\n{body}    return __obj\n", namespace)
    return namespace["make"]


def keyword_constructor(cls: type[T]) -> Callable[..., T]:
    """A keyword-only constructor equal to `cls(**fields)`. Fields with a default factory
    must be given."""
    fields = _fields(cls)
    if fields is None:
        return cls
    defaults = {
        f"__default_{f.name}": f.default for f in fields if f.default is not dataclasses.MISSING
    }
    params = [
        f.name if f.default is dataclasses.MISSING else f"{f.name}=__default_{f.name}"
        for f in fields
    ]
    make: Callable[..., T] = _compile(cls, "*, " + ", ".join(params), lambda n: n, defaults)
    return make


def positional_constructor(cls: type[T]) -> Callable[..., T]:
    """A constructor taking every field positionally, in field order (decoding thousands
    of rows at a time)."""
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    if _fields(cls) is None:
        return lambda *values: cls(**dict(zip(names, values, strict=True)))
    make: Callable[..., T] = _compile(cls, ", ".join(names), lambda n: n, {})
    return make


def replacer(cls: type[T], *changed: str) -> Callable[..., T]:
    """`make(old, *values)` equal to `dataclasses.replace(old, **dict(zip(changed, values)))`."""
    if _fields(cls) is None:

        def slow(old: Any, *values: Any) -> T:
            copied: T = dataclasses.replace(old, **dict(zip(changed, values, strict=True)))
            return copied

        return slow
    make: Callable[..., T] = _compile(
        cls, ", ".join(["__old", *changed]), lambda n: n if n in changed else f"__old.{n}", {}
    )
    return make


def slot_setter(cls: type[Any], name: str) -> Callable[[Any, Any], None]:
    """Sets field `name` of a frozen, slotted `cls` instance in place, for an object that
    nothing else holds yet (its maker finishing it); frozen objects are otherwise never
    changed."""
    if _fields(cls) is None:
        return lambda obj, value: object.__setattr__(obj, name, value)
    setter: Callable[[Any, Any], None] = getattr(cls, name).__set__
    return setter
