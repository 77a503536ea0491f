"""Port types: what flows along an edge, and which edges are allowed.

A port type is any Python class (a frozen dataclass from `nodes.types`, a
`torch.Tensor`, `str`, `pathlib.Path`, ...) or `Keyed[T]`. An edge is valid
when the producer's type is a subclass of the consumer's (`Any` accepts all).
"""
from __future__ import annotations

import types
import typing
from typing import Any, Union, get_args, get_origin

from .keyed import Keyed


def strip_optional(tp: Any) -> tuple[Any, bool]:
    """`T | None` -> (T, True); anything else -> (tp, False)."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) < len(get_args(tp)):
            inner = args[0] if len(args) == 1 else Union[tuple(args)]  # noqa: UP007
            return inner, True
    return tp, False


def keyed_item_type(tp: Any) -> Any | None:
    """The item type of `Keyed[T]`, `Any` for a bare `Keyed`, None for non-keyed types."""
    if tp is Keyed:
        return Any
    if get_origin(tp) is Keyed:
        (arg,) = get_args(tp)
        return arg
    return None


def compatible(src: Any, dst: Any) -> bool:
    """Can a value of port type `src` feed an input of port type `dst`?"""
    if src is Any or dst is Any:
        return True
    dst_item, src_item = keyed_item_type(dst), keyed_item_type(src)
    if dst_item is not None or src_item is not None:
        return dst_item is not None and src_item is not None and compatible(src_item, dst_item)
    dst_origin = get_origin(dst) or dst
    src_origin = get_origin(src) or src
    if dst_origin in (Union, types.UnionType):
        return any(compatible(src, d) for d in get_args(dst))
    try:
        return issubclass(src_origin, dst_origin)
    except TypeError:
        return src_origin == dst_origin


def type_name(tp: Any) -> str:
    """Readable name of a port type: `Keyed[Instance]`, `Scene`, `Tensor`."""
    if tp is Any:
        return "Any"
    item = keyed_item_type(tp)
    if item is not None:
        return f"Keyed[{type_name(item)}]"
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def resolve_hints(fn: Any) -> dict[str, Any]:
    """Type hints of a function with string annotations resolved."""
    return typing.get_type_hints(fn)
