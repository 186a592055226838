"""Plain dicts → the frozen config dataclasses (model, diffusion, surrogate, training).

Configs live in YAML files and checkpoints as plain dicts. :func:`config_from_dict` refuses
unknown keys by name and accepts numbers written any way YAML reads them (``1e-4`` arrives as a
string); the dataclass's own ``__post_init__`` then checks the values.

>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class Toy:
...     width: int = 8
...     lr: float = 1e-3
>>> config_from_dict(Toy, {"width": 16.0, "lr": "1e-4"}, "toy")
Toy(width=16, lr=0.0001)
>>> config_from_dict(Toy, {"widht": 16}, "toy")
Traceback (most recent call last):
...
dosmatgen.errors.ConfigError: unknown toy config key(s) ['widht']; known keys: ['lr', 'width']
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Iterable, TypeVar

from dosmatgen.errors import ConfigError

_C = TypeVar("_C")
_D = TypeVar("_D", bound="DictConfig")


def config_from_dict(cls: type[_C], d: dict[str, Any] | None, what: str) -> _C:
    """``cls(**d)`` with unknown keys refused and ``int``/``float`` fields coerced; None → defaults."""
    if d is None:
        return cls()
    if not isinstance(d, dict):
        raise ConfigError(f"{what} config must be a mapping, got {type(d).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ConfigError(f"unknown {what} config key(s) {unknown}; known keys: {sorted(names)}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in d:
            continue
        value = d[f.name]
        kind = str(f.type).replace(" | None", "")
        try:
            if value is not None and not isinstance(value, bool):
                if kind == "float":
                    value = float(value)
                elif kind == "int" and float(value) == int(float(value)):
                    value = int(float(value))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{what} config {f.name} must be of type {kind}, got {value!r}") from exc
        kwargs[f.name] = value
    return cls(**kwargs)


class DictConfig:
    """``to_dict`` / ``from_dict`` (:func:`config_from_dict`) of a config dataclass; ``WHAT`` names
    the config in error messages."""

    WHAT: ClassVar[str] = "config"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[_D], d: dict[str, Any] | None) -> _D:
        return config_from_dict(cls, d, cls.WHAT)


def require_positive_ints(config: Any, names: Iterable[str], what: str) -> None:
    """Raise :class:`ConfigError` unless every named field of ``config`` is an int ≥ 1."""
    for name in names:
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{what} config {name} must be a positive integer, got {value!r}")
