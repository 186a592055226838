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
