"""Progress a log can show: a tqdm bar where one is wanted, else (``--no-progress``, as in every
workflow log) a plain line ``[what] done/total unit (pct%), rate, ETA h:mm:ss`` on stderr at most
every ``DOSMATGEN_PROGRESS_EVERY`` seconds (default 30) and once at the end of a job that took
longer than that.

>>> lines = bar(False, total=4, desc="demo", unit="steps")
>>> lines.update(4)
>>> lines.format(2.0)
'[demo] 4/4 steps (100%), 2 steps/s, ETA 0:00:00'
"""

from __future__ import annotations

import os
import sys
import time
from datetime import timedelta
from typing import Any, Iterable


class Lines:
    """The part of tqdm's interface the package uses (iterate, ``update``, ``set_postfix``, ``close``)."""

    def __init__(self, iterable: Iterable[Any] | None = None, total: int | None = None, desc: str = "",
                 unit: str = "it", initial: int = 0, disable: bool = False, **_: Any):
        self.iterable, self.desc, self.unit, self.disable = iterable, desc, unit, disable
        self.total = len(iterable) if total is None and hasattr(iterable, "__len__") else total
        self.n = self.n0 = initial
        self.every = float(os.environ.get("DOSMATGEN_PROGRESS_EVERY", 30))
        self.t0 = self.last = time.monotonic()
        self.postfix, self.printed = "", None

    def __iter__(self):
        for item in self.iterable or ():
            yield item
            self.update(1)
        self.close()

    def set_postfix(self, **values: Any) -> None:
        self.postfix = "".join(f", {k}={v}" for k, v in values.items())

    def format(self, elapsed: float) -> str:
        rate = (self.n - self.n0) / elapsed if elapsed > 0 else 0.0
        eta = str(timedelta(seconds=round((self.total - self.n) / rate))) if rate > 0 and self.total else "?"
        pct = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        return f"[{self.desc}] {self.n}/{self.total or '?'} {self.unit}{pct}, {rate:.3g} {self.unit}/s, ETA {eta}{self.postfix}"

    def update(self, n: int = 1, final: bool = False) -> None:
        self.n += n
        now = time.monotonic()
        if not self.disable and (final or now - self.last >= self.every):
            self.last, self.printed = now, self.n
            print(self.format(now - self.t0), file=sys.stderr, flush=True)

    def close(self) -> None:
        """The last line, once, for a job that printed a line or ran a whole interval: a short job
        (most commands run by hand) prints none."""
        if self.printed != self.n and (self.printed is not None or time.monotonic() - self.t0 >= self.every):
            self.update(0, final=True)
        self.disable = True


def bar(show: bool, iterable: Iterable[Any] | None = None, **kwargs: Any) -> Any:
    """``tqdm(iterable, **kwargs)`` when ``show``, else :class:`Lines` (same arguments)."""
    if show:
        from tqdm.auto import tqdm

        return tqdm(iterable, **kwargs)
    return Lines(iterable, **kwargs)


__all__ = ["Lines", "bar"]
