"""Checked number types for command-line options: NaN, inf and out-of-range values stop at the
argument parser with one line naming the option, before any work.

>>> non_negative("0.5"), positive("2")
(0.5, 2.0)
>>> non_negative("nan")
Traceback (most recent call last):
...
argparse.ArgumentTypeError: 'nan' is not a finite number
>>> non_negative("-5")
Traceback (most recent call last):
...
argparse.ArgumentTypeError: -5.0 must be >= 0
"""

from __future__ import annotations

import argparse
import math


def finite(text: str) -> float:
    """A finite float."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def non_negative(text: str) -> float:
    """A finite float >= 0 (guidance weights and scales, step sizes)."""
    value = finite(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} must be >= 0")
    return value


def positive(text: str) -> float:
    """A finite float > 0 (timeouts, tolerances)."""
    value = finite(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} must be > 0")
    return value


class OneLineErrorParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (``prog: error: ...``, exit 2), like
    every other error of the command line; ``--help`` still shows the full usage."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def integer(text: str) -> int:
    """An integer (a one-line parser error otherwise)."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def elements(text: str) -> tuple[int, ...]:
    """``"Ni,O,28"`` -> (28, 8, 28) sorted and unique: element symbols or atomic numbers.

    >>> elements("O,Ni,8")
    (8, 28)
    """
    from dosmatgen.data.schema import atomic_number
    from dosmatgen.errors import DataError

    out = set()
    for tok in (t.strip() for t in text.split(",") if t.strip()):
        try:
            out.add(atomic_number(tok))
        except DataError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    if not out:
        raise argparse.ArgumentTypeError("no element given (expected e.g. Ni,O)")
    return tuple(sorted(out))


#: Parser type of each kind of :class:`~dosmatgen.generate.options.SamplerOptions` field.
_KINDS = {"non_negative": non_negative, "positive": positive, "int": integer, "elements": elements}


def sampler_flag(name: str) -> str:
    """The command-line flag of a :class:`SamplerOptions` field.

    >>> sampler_flag("step_lr"), sampler_flag("start_at_T")
    ('--step-lr', '--start-at-T')
    """
    return "--" + name.replace("_", "-")


def add_sampler_options(group) -> None:
    """One flag per :class:`~dosmatgen.generate.options.SamplerOptions` field, made from the field's
    metadata; a flag not given is None and the field keeps its default (written once, in the
    dataclass), so a new field reaches every command that generates."""
    import dataclasses

    from dosmatgen.generate.options import SamplerOptions

    for f in dataclasses.fields(SamplerOptions):
        meta = f.metadata
        default = "off" if f.default is None else f.default
        help_text = f"{meta['help']} (default {default})"
        if meta.get("kind") == "flag":
            group.add_argument(sampler_flag(f.name), dest=f.name, action="store_true", default=None, help=help_text)
        elif "choices" in meta:
            group.add_argument(sampler_flag(f.name), dest=f.name, choices=meta["choices"], default=None, help=help_text)
        else:
            group.add_argument(sampler_flag(f.name), dest=f.name, type=_KINDS[meta["kind"]], default=None,
                               help=help_text)


def sampler_options(args: argparse.Namespace, **defaults):
    """The :class:`~dosmatgen.generate.options.SamplerOptions` of the flags given; ``defaults``
    are a command's own starting values for flags not given (e.g. the studies' elements of the
    store as ``allowed_types``)."""
    import dataclasses

    from dosmatgen.generate.options import SamplerOptions

    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(SamplerOptions)
             if getattr(args, f.name, None) is not None}
    return SamplerOptions(**{**defaults, **given})
