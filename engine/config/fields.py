"""Reading config values as untrusted data: a JSON value coerced to its field's type
(Optional, lists, tuples; true is not a number; overflow and lengths caught), every number
bounded, and one message naming the field and the value."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import fields
from typing import Any, get_args, get_origin, get_type_hints

from engine.core.errors import WorkbenchError


class ConfigError(WorkbenchError, ValueError):
    """A config field has a value that cannot work; the message says which and why."""


MAX_TEXT = 10_000  # characters in a config string (a name, a path)
MAX_LIST = 100_000  # entries in a config list (classes, counts, milestones)


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _one_of(name: str, value: str, choices: tuple[str, ...]) -> None:
    _require(value in choices, f"{name} must be one of {', '.join(choices)}, got {value!r}")


def _from_dict(cls: type, d: dict[str, Any], where: str) -> Any:
    """Build dataclass `cls` from a dict, refusing unknown keys and wrongly typed values."""
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(d) - set(known))
    _require(not unknown, f"unknown field(s) {unknown} in {where}; valid: {sorted(known)}")
    hints = get_type_hints(cls)
    # A field added after runs were made: a stored config without it means what those runs
    # did, not the new default (e.g. the dynamic filters' response scale).
    d = {**getattr(cls, "LEGACY_DEFAULTS", {}), **d}
    kwargs = {}
    for key, value in d.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            _require(isinstance(value, dict), f"{where}.{key} must be an object")
            kwargs[key] = _from_dict(hint, value, f"{where}.{key}")
        else:
            kwargs[key] = _coerce(value, hint, f"{key}")
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, name: str) -> Any:
    """`value` as the type `hint` names (int, float, bool, str, list[int], list[str], or one
    of these or None); ConfigError for anything else, e.g. `true` where a number belongs."""
    args = get_args(hint)
    if value is None:
        _require(type(None) in args, f"{name} must not be null")
        return None
    if type(None) in args:  # X | None: the X
        hint = next(a for a in args if a is not type(None))
    if hint is bool:
        _require(isinstance(value, bool), f"{name} must be true or false, got {_short(value)}")
        return value
    if hint is int:
        _require(_is_int(value), f"{name} must be an integer, got {_short(value)}")
        return value
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        _require(ok, f"{name} must be a number, got {_short(value)}")
        try:
            value = float(value)
        except OverflowError:
            raise ConfigError(
                f"{name} must be a number of sensible size, got {_short(value)}"
            ) from None
        _require(math.isfinite(value), f"{name} must be a finite number, got {value}")
        return value
    if hint is str:
        _require(isinstance(value, str), f"{name} must be a string, got {_short(value)}")
        _require(len(value) <= MAX_TEXT, f"{name} must be at most {MAX_TEXT} characters")
        return value
    if get_origin(hint) is list:
        (item,) = get_args(hint)
        check = _is_int if item is int else (lambda v: isinstance(v, str))
        ok = isinstance(value, list) and all(check(v) for v in value)
        what = "integers" if item is int else "strings"
        _require(ok, f"{name} must be a list of {what}, got {_short(value)}")
        _require(len(value) <= MAX_LIST, f"{name} must have at most {MAX_LIST} entries")
        return list(value)
    raise ConfigError(f"{name}: no reader for values of type {hint}")  # a new field's type


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _short(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**300:
        return _num(value)
    try:
        text = repr(value)
    except ValueError:  # a container holding an int too long to print
        return f"a {type(value).__name__} too large to print"
    return text if len(text) <= 60 else text[:57] + "..."


def _bounded(name: str, value: float, low: float, high: float) -> None:
    """`low <= value <= high`, said with the bounds: every number in a config has a ceiling
    (epochs 10**20 would build a snapshot list of that length; threads 10**6 crash)."""
    if not low <= value <= high:
        raise ConfigError(f"{name} must be in [{_num(low)}, {_num(high)}], got {_num(value)}")


def _num(value: float) -> str:
    """A number for a message, as %g (1e+20); an int beyond any float (10**400) by its
    length, since it has no float form (and one of 5000 digits no str form either)."""
    if isinstance(value, int) and abs(value) >= 10**300:
        return f"a number of about {int(value.bit_length() * 0.30103) + 1} digits"
    return f"{value:g}"
