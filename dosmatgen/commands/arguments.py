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
import os
import re


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
    every other error of the command line; ``--help`` still shows the full usage. A range error
    of the integer types reads ``--flag must be >= 1, got 0``."""

    def error(self, message: str):  # type: ignore[override]
        message = re.sub(r"^argument (\S+): must be", r"\1 must be", message)
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def integer(text: str) -> int:
    """An integer (a one-line parser error otherwise)."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def positive_int(text: str) -> int:
    """An integer >= 1 (counts, sizes, batch sizes, workers, threads, limits).

    >>> positive_int("0")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: must be >= 1, got 0
    """
    value = integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0 (seeds, retries, numbers to skip)."""
    value = integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def atom_count(text: str) -> int:
    """Atoms of one crystal to generate, at most :data:`~dosmatgen.data.plausibility.MAX_ATOMS`
    (memory: the denoiser's graph has N^2 edges per crystal); the generation spec refuses fewer
    than one."""
    from dosmatgen.data.plausibility import MAX_ATOMS

    value = integer(text)
    if value > MAX_ATOMS:
        raise argparse.ArgumentTypeError(f"must be <= MAX_ATOMS = {MAX_ATOMS} atoms per crystal, got {value} "
                                         "(the denoiser's N^2 edges would not fit in memory)")
    return value


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
_KINDS = {"non_negative": non_negative, "positive": positive, "int": integer, "positive_int": positive_int,
          "non_negative_int": non_negative_int, "elements": elements}


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


# ---- paths: every command declares its inputs and outputs; one check runs before any work -------
#: Option names (argparse ``dest``) that hold a path. A command with one of these must declare it as
#: an input or an output (``tests/test_hostile_inputs.py`` enumerates every command).
PATH_DESTS = frozenset({
    "out", "store", "split", "standardiser", "json", "text", "figure", "shards", "jobs", "pool", "input", "dir",
    "split_out", "release", "config", "checkpoint", "target_dos", "target_vasprun", "template", "regressor", "surrogate",
    "generated", "cif_dir", "metrics_dir", "formation", "provenance", "results", "refs_cache", "work_dir", "rates",
    "save_rates", "bench", "crystals", "truth", "figures", "notes", "run_config", "inputs", "train_ids", "merge",
    "require", "recorded", "cache", "judged"})


def declare_paths(parser: argparse.ArgumentParser, *, inputs: tuple[str, ...] = (),
                  outputs: dict[str, str] | None = None) -> None:
    """Record which options of ``parser`` are input paths and which are outputs (``"file"`` or
    ``"dir"``), for :func:`check_paths`."""
    parser.set_defaults(_paths={"inputs": tuple(inputs), "outputs": dict(outputs or {})})


def _values(value) -> list[str]:
    if value is None or isinstance(value, bool):
        return []
    items = value if isinstance(value, (list, tuple)) else [value]
    # "LABEL=FILE" values (figures formation --generated) name the file after the last "="
    return [str(v).rsplit("=", 1)[-1] if "=" in str(v) and not os.path.exists(str(v)) else str(v) for v in items]


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def check_paths(args: argparse.Namespace) -> None:
    """Before any work: an output that resolves (symlinks followed) to an input or to another
    output, an output that exists as the other kind (a file where a folder is written or the
    reverse), an input inside an output folder (which is replaced), or an output that is not a
    regular file or folder (a device, a FIFO) stops with one line."""
    import stat

    from dosmatgen.errors import ConfigError

    roles = getattr(args, "_paths", None)
    if roles is None:
        return
    outs = [(d, v, kind) for d, kind in roles["outputs"].items() for v in _values(getattr(args, d, None))]
    ins = [(d, v) for d in roles["inputs"] for v in _values(getattr(args, d, None))]
    for dest, value, kind in outs:
        if os.path.exists(value):
            mode = os.stat(value).st_mode
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                raise ConfigError(f"{_flag(dest)} {value} is not a regular file or folder (a device, FIFO or socket); "
                                  "give a path to write to")
            if kind == "file" and stat.S_ISDIR(mode):
                raise ConfigError(f"{_flag(dest)} {value} is a folder; it must be a file")
            if kind == "dir" and stat.S_ISREG(mode):
                raise ConfigError(f"{_flag(dest)} {value} is an existing file; it must be a folder")
        real = os.path.realpath(value)
        for other, other_value in ins:
            other_real = os.path.realpath(other_value)
            if other_real == real or (kind == "dir" and other_real.startswith(real + os.sep)):
                what = "is" if other_real == real else "holds"
                raise ConfigError(f"{_flag(dest)} {value} {what} the input {_flag(other)} {other_value}: writing "
                                  "it would destroy the input; choose another output")
        for other, other_value, _ in outs:
            if other != dest and os.path.realpath(other_value) == real:
                raise ConfigError(f"{_flag(dest)} and {_flag(other)} are the same path {value}; give two outputs")
