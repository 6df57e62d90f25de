"""Argument checks, one message style: `"<name> must be <what>; got <value>"`.

Every public constructor and builder validates its arguments eagerly through these functions,
so an integer that is a bool, an event shape with a zero in it or an unknown dtype gets the
same kind of message wherever it is passed. Importing this module does not import TensorFlow.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from numbers import Integral, Real
from typing import Any

__all__ = [
    "DTYPES",
    "is_integer",
    "integer",
    "boolean",
    "number",
    "event_shape",
    "dtype",
    "context_size",
    "one_of",
    "raising",
]

DTYPES: tuple[str, ...] = ("float32", "float64")
"""The floating dtypes a flow computes in."""


def is_integer(value: Any) -> bool:
    """Whether `value` is a Python or numpy integer and not a bool (`True` is an `int` in Python)."""
    return isinstance(value, Integral) and not isinstance(value, bool) and type(value).__name__ != "bool_"


def integer(name: str, value: Any, low: int | None = None, high: int | None = None) -> int:
    """`value` as an `int`, or a `ValueError` naming `name` unless it is an integer in `[low, high]`.

    Args:
      name: the argument's name, as the user wrote it.
      value: what was passed.
      low: the smallest value allowed; `None` for no bound.
      high: the largest value allowed; `None` for no bound.

    Raises:
      ValueError: `"<name> must be an integer >= <low>; got <value>"` (or the range it must lie in).
    """
    if not is_integer(value) or (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be {_integer_range(low, high)}; got {value!r}")
    return int(value)


def _integer_range(low: int | None, high: int | None) -> str:
    if low is not None and high is not None:
        return f"an integer in [{low}, {high}]"
    if low is not None:
        return f"an integer >= {low}"
    if high is not None:
        return f"an integer <= {high}"
    return "an integer"


def boolean(name: str, value: Any, *, optional: bool = False) -> bool | None:
    """`value` as a `bool` (a Python or numpy bool; `None` too when `optional`), or a `ValueError`.

    Raises:
      ValueError: `"<name> must be True or False; got <value>"` (`"True, False or None"`).
    """
    if value is None and optional:
        return None
    if not (isinstance(value, bool) or type(value).__name__ == "bool_"):
        raise ValueError(f"{name} must be {'True, False or None' if optional else 'True or False'}; got {value!r}")
    return bool(value)


def number(
    name: str, value: Any, *, low: float | None = None, positive: bool = False, below: float | None = None
) -> float:
    """`value` as a finite `float`, or a `ValueError` naming `name`.

    Args:
      name: the argument's name.
      value: what was passed: a Python or numpy real number, not a bool.
      low: the smallest value allowed; `None` for no bound.
      positive: whether the value must be strictly above 0.
      below: a bound the value must stay strictly below; `None` for none.

    Raises:
      ValueError: `"<name> must be a finite number > 0; got <value>"`, `"... in [0, 1); ..."`
        and the like.
    """
    ok = isinstance(value, Real) and not isinstance(value, bool) and type(value).__name__ != "bool_"
    ok = ok and math.isfinite(float(value))
    ok = ok and (low is None or float(value) >= low) and (not positive or float(value) > 0)
    ok = ok and (below is None or float(value) < below)
    if not ok:
        raise ValueError(f"{name} must be a finite number{_number_range(low, positive, below)}; got {value!r}")
    return float(value)


def _number_range(low: float | None, positive: bool, below: float | None) -> str:
    if below is not None and (positive or low is not None):
        return f" in {'(0' if positive else f'[{low:g}'}, {below:g})"
    if below is not None:
        return f" < {below:g}"
    return " > 0" if positive else (f" >= {low:g}" if low is not None else "")


def event_shape(
    value: Any,
    *,
    name: str = "event_shape",
    rank: int | None = None,
    example: str = "[2] or [8, 8, 1]",
) -> tuple[int, ...]:
    """An event shape as a tuple of positive ints; an integer `n` is the shape `[n]`.

    Args:
      value: an integer, or a sequence of integers (a list, tuple or `tf.TensorShape` of known sizes).
      name: the argument's name.
      rank: the number of dimensions required; `None` for any rank >= 1.
      example: an example of a good value, for the message.

    Raises:
      ValueError: `"<name> must be positive integers such as <example>; got <value>"`.
    """
    shape: Any
    if is_integer(value):
        shape = (value,)
    elif isinstance(value, (str, bytes)):
        shape = None
    else:
        try:
            shape = tuple(value)
        except TypeError:
            shape = None
    if not shape or any(not is_integer(n) or n < 1 for n in shape) or (rank is not None and len(shape) != rank):
        what = f"{rank} positive integers" if rank is not None else "positive integers"
        raise ValueError(f"{name} must be {what} such as {example}; got {value!r}")
    return tuple(int(n) for n in shape)


def dtype(value: Any, *, name: str = "dtype") -> str:
    """`"float32"` or `"float64"` (a numpy or TensorFlow dtype of those names is accepted too)."""
    text = getattr(value, "name", value)
    if text not in DTYPES:
        raise ValueError(f"{name} must be 'float32' or 'float64'; got {value!r}")
    return str(text)


def context_size(value: Any) -> int:
    """The number of context features: an integer >= 0 (0 for an unconditional flow)."""
    return integer("context_size", value, low=0)


def one_of(name: str, value: Any, choices: Sequence[Any]) -> Any:
    """`value` if it is one of `choices`, else a `ValueError` listing them."""
    if isinstance(value, (list, dict, set)) or value not in tuple(choices):
        listed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {listed}; got {value!r}")
    return value


@contextlib.contextmanager
def raising(error: type[ValueError]) -> Iterator[None]:
    """Within the block, a check's `ValueError` is raised as `error` (a subclass) with the same message.

    A module whose users catch its own error class (`DataError`, `ConfigError`) checks its
    arguments with these functions inside `with checks.raising(DataError):`.
    """
    try:
        yield
    except ValueError as failure:
        if isinstance(failure, error):
            raise
        raise error(str(failure)) from None
