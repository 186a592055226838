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


def add_repulsion_options(group) -> None:
    """``--repel-distance`` / ``--repel-until``: the sampler's pair-repulsion option
    (:class:`dosmatgen.model.repulsion.PairRepulsion`), off unless a distance is given."""
    group.add_argument("--repel-distance", type=positive, default=None, metavar="ANGSTROM",
                       help="an option, not the paper's sampler: after each reverse step, push apart atoms of "
                            "one crystal closer than this (e.g. 1.0), so that two atoms that meet in mid-chain "
                            "do not stay on one site (results/repulsion_probe/). Default: off")
    group.add_argument("--repel-until", type=int, default=200, metavar="T",
                       help="with --repel-distance: push only while the chain's time is >= T, leaving the last "
                            "steps to the model (default 200 of 1000; 0 = to the end)")


def repulsion_of(args: argparse.Namespace):
    """The :class:`~dosmatgen.model.repulsion.PairRepulsion` the options ask for, or None."""
    from dosmatgen.model.repulsion import PairRepulsion

    if args.repel_distance is None:
        return None
    return PairRepulsion(args.repel_distance, args.repel_until)
