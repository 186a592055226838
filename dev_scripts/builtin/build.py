"""Build the embedded default dataset (DESIGN §3.2 "built-in"): prototype crystals with element
substitutions, relaxed with an MLFF and labelled with GPAW site DOS.

Candidate sources (``--source``): ``prototypes`` (the default, above) and ``mp20``, real
Materials Project crystals from the MP-20 pool (:mod:`dev_scripts.builtin.mp20`), labelled unrelaxed
with the same engine and protocol into the same folder; their ledger and shards are named
``ledger-mp20*.jsonl`` and ``shard-mp20-*.npz`` so that both sources can run at once.

Resumable: finished records go into shards of ~25 records (``shard-00001.npz`` ...) written
atomically into ``out_dir``; ``ledger.jsonl`` lists every structure done or failed (with the
reason), so a rerun skips both.  :func:`merge` joins the shards into one store (the package's
:func:`dosmatgen.data.store.merge_shards`, also ``dosmatgen data merge --source builtin``).

Partitioned (``--part I/K``, e.g. one SLURM array task per part): part I takes every K-th
candidate of the full list, starting at the I-th, and writes its own ``ledger-partIofK.jsonl``
and ``shard-partIofK-00001.npz`` ..., so K jobs can share ``out_dir`` (a network file system)
without touching each other's files; every job and :func:`merge` read all ledgers and shards.

Command line (what the background job runs; from the repository root, :mod:`dev_scripts.builtin.cli`)::

    python -m dev_scripts.builtin build --out resources/builtin --workers 2 --n-max 4000 --seed 0
    python -m dev_scripts.builtin build --out resources/builtin --workers 1 --source mp20 --max-atoms 8
    python -m dev_scripts.builtin build --out resources/builtin --merge-only --store resources/builtin_dos.npz
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from dev_scripts.builtin.prototypes import PROTOTYPES, TARGETS, Prototype, is_magnetic, structure_id_for, substitutions
from dosmatgen.data.schema import MIN_DISTANCE, CrystalRecord
# the readers of a build folder are the package's (dosmatgen data info and merge use them too)
from dosmatgen.data.store import LEDGER, merge_shards, read_ledger, shard_paths
from dosmatgen.dos.gpaw_engine import cost_estimate
from dosmatgen.errors import DataError
from dosmatgen.evaluate.mlff import DEFAULT_FMAX, DEFAULT_RELAX_STEPS

#: Candidate sources of :func:`build` (``--source``); the first is the default.
SOURCES: tuple[str, ...] = ("prototypes", "mp20")


def parse_part(text: str) -> tuple[int, int]:
    """``"I/K"`` → ``(I, K)`` with ``1 <= I <= K``.

    >>> parse_part("2/8")
    (2, 8)
    """
    try:
        i, k = (int(v) for v in text.split("/"))
    except ValueError:
        raise DataError(f"--part must look like I/K (e.g. 2/8), got {text!r}") from None
    if not 1 <= i <= k:
        raise DataError(f"--part I/K needs 1 <= I <= K, got {text!r}")
    return i, k


def part_files(part: tuple[int, int] | None, source: str = "prototypes") -> tuple[str, str]:
    """(ledger file name, shard name prefix) of a part of a source; the unpartitioned names for None.
    The prototype source keeps the original names; any other source adds its name.

    >>> part_files(None)
    ('ledger.jsonl', 'shard-')
    >>> part_files((2, 8))
    ('ledger-part2of8.jsonl', 'shard-part2of8-')
    >>> part_files(None, "mp20"), part_files((2, 8), "mp20")
    (('ledger-mp20.jsonl', 'shard-mp20-'), ('ledger-mp20-part2of8.jsonl', 'shard-mp20-part2of8-'))
    """
    tag = "" if source == "prototypes" else source
    if part is not None:
        tag = "-".join(filter(None, (tag, f"part{part[0]}of{part[1]}")))
    if not tag:
        return LEDGER, "shard-"
    return f"ledger-{tag}.jsonl", f"shard-{tag}-"


def select_part(cands: list, part: tuple[int, int] | None) -> list:
    """Every K-th candidate starting at the I-th (positions in the full, deterministic list)."""
    if part is None:
        return list(cands)
    i, k = part
    return list(cands[i - 1::k])


# ---- candidate list ---------------------------------------------------------------------------
class LabelCandidate(Protocol):
    """What :func:`build` needs of a candidate of any source."""

    structure_id: str
    cost: float
    #: whether the crystal is MLFF-relaxed before labelling
    relax: ClassVar[bool]

    def build(self) -> CrystalRecord:
        """The unlabelled crystal."""

    def ledger_fields(self) -> dict[str, Any]:
        """What the ledger records besides id and outcome."""


@dataclass(frozen=True)
class Candidate:
    """One structure to build: prototype name, elements per role, id, cost estimate (s)."""

    prototype: str
    elements: tuple[str, ...]
    structure_id: str
    cost: float
    magnetic: bool

    #: prototype cells come from a radius rule: the builder MLFF-relaxes them before labelling
    relax: ClassVar[bool] = True

    def build(self) -> CrystalRecord:
        """The unrelaxed prototype cell."""
        return PROTOTYPES[self.prototype].build(self.elements)

    def ledger_fields(self) -> dict[str, Any]:
        """What the ledger records besides id and outcome."""
        return {"prototype": self.prototype}


def estimated_cost(proto: Prototype, elements: tuple[str, ...]) -> float:
    """:func:`cost_estimate` of ``proto`` with ``elements``."""
    return cost_estimate(proto.num_atoms, is_magnetic(elements))


def candidates(seed: int = 0, n_max: int | None = None, magnetic_share: float = 0.35) -> list[Candidate]:
    """Deterministic, ordered candidate list (same ``seed`` -> same list).

    Order: the paper's targets (L1_2 Au3Ni, rutile IrO2) first; then stride scheduling over
    streams (one per prototype x magnetic/non-magnetic) so each stream gets about equal estimated
    compute (magnetic streams ``magnetic_share`` of it) -- cheap cells therefore come early and
    often.  Within a stream, among the next few shuffled candidates the one whose elements have
    been used least so far is taken, which spreads the elements early.
    """
    rng = random.Random(seed)
    order: list[Candidate] = []
    seen: set[str] = set()
    for name, elements in TARGETS:
        proto = PROTOTYPES[name]
        sid = structure_id_for(proto, elements)
        order.append(Candidate(name, elements, sid, estimated_cost(proto, elements), is_magnetic(elements)))
        seen.add(sid)
    streams: dict[tuple[str, bool], list[Candidate]] = {}
    for name in sorted(PROTOTYPES):
        proto = PROTOTYPES[name]
        for elements in substitutions(proto):
            sid = structure_id_for(proto, elements)
            if sid in seen:
                continue
            seen.add(sid)
            mag = is_magnetic(elements)
            streams.setdefault((name, mag), []).append(
                Candidate(name, elements, sid, estimated_cost(proto, elements), mag))
    keys = sorted(streams)
    for k in keys:
        rng.shuffle(streams[k])
    # magnetic streams start one (expensive) step behind, so the first round is all cheap cells
    clock = {k: rng.random() * 1e-3 + (streams[k][0].cost / magnetic_share if k[1] else 0.0) for k in keys}
    usage: dict[str, int] = {}
    window = 12
    limit = n_max if n_max is not None else sum(len(v) for v in streams.values()) + len(order)
    while len(order) < limit and streams:
        key = min(streams, key=lambda k: (clock[k], k))
        pool = streams[key]
        best = min(range(min(window, len(pool))),
                   key=lambda i: (sum(usage.get(e, 0) for e in set(pool[i].elements)), i))
        cand = pool.pop(best)
        order.append(cand)
        for e in set(cand.elements):
            usage[e] = usage.get(e, 0) + 1
        share = magnetic_share if key[1] else 1.0
        clock[key] += cand.cost / share
        if not pool:
            del streams[key]
    return order[:limit]


def source_candidates(source: str = "prototypes", seed: int = 0, n_max: int | None = None,
                      pool: str | Path | None = None,
                      max_atoms: int | None = None) -> tuple[list[LabelCandidate], list[tuple[str, str]]]:
    """The ordered candidates of ``source`` and its skipped rows ``(id, reason)``.

    ``prototypes``: :func:`candidates` (``seed``, ``n_max``), nothing skipped.  ``mp20``:
    :func:`dev_scripts.builtin.mp20.candidates` of the pool file ``pool`` (default: the repository's,
    ``resources/mp20``) with at most ``max_atoms`` atoms (default
    :data:`dev_scripts.builtin.mp20.DEFAULT_MAX_ATOMS`), cheapest first, the first ``n_max``.
    """
    if source == "prototypes":
        return list(candidates(seed, n_max)), []
    if source == "mp20":
        from dev_scripts.builtin import mp20

        return mp20.candidates(pool if pool is not None else mp20.DEFAULT_POOL,
                               max_atoms if max_atoms is not None else mp20.DEFAULT_MAX_ATOMS, n_max)
    raise DataError(f"unknown candidate source {source!r} (choose from {', '.join(SOURCES)})")


def report_skipped(source: str, skipped: list[tuple[str, str]]) -> None:
    """One stderr line per kind of skip reason (count and the first few ids)."""
    kinds: dict[str, list[str]] = {}
    for sid, reason in skipped:
        kinds.setdefault(reason.split(": ", 1)[0], []).append(sid)
    for kind, ids in kinds.items():
        more = ", ..." if len(ids) > 3 else ""
        print(f"[skipped] {source}: {len(ids)} rows, {kind} (e.g. {', '.join(ids[:3])}{more})",
              file=sys.stderr, flush=True)


# ---- ledger and shards (read by dosmatgen.data.store: read_ledger, shard_paths, read_shards) -----
def check_retry_text(retry_failed: str | None) -> None:
    """DataError for an empty ``--retry-failed`` text (it would match every failure)."""
    if retry_failed is not None and not retry_failed.strip():
        raise DataError("--retry-failed needs a non-empty text to look for in the failure reasons")


def without_retried_failures(ledger: dict[str, dict[str, Any]],
                             retry_failed: str | None) -> dict[str, dict[str, Any]]:
    """``ledger`` less the failures whose reason contains ``retry_failed`` (None: all kept), so
    that those structures count as still to do.

    >>> led = {"a": {"status": "failed", "reason": "OverflowError: x"}, "b": {"status": "done"},
    ...        "c": {"status": "failed", "reason": "timed out"}}
    >>> sorted(without_retried_failures(led, "OverflowError")), sorted(without_retried_failures(led, None))
    (['b', 'c'], ['a', 'b', 'c'])
    """
    if retry_failed is None:
        return ledger
    return {k: e for k, e in ledger.items()
            if not (e.get("status") == "failed" and retry_failed in str(e.get("reason", "")))}


def _append_ledger(out_dir: Path, entries: list[dict[str, Any]], name: str = LEDGER) -> None:
    with open(out_dir / name, "a") as fh:
        for e in entries:
            fh.write(json.dumps(e, sort_keys=True) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _next_shard_index(out_dir: Path, prefix: str = "shard-") -> int:
    """One more than the highest index among the shards named ``<prefix><index>.npz``."""
    idx = [int(rest) for p in shard_paths(out_dir)
           if p.stem.startswith(prefix) and (rest := p.stem[len(prefix):]).isdigit()]
    return max(idx, default=0) + 1


# ---- one structure (runs in a worker process) -------------------------------------------------
_STATE: dict[str, Any] = {}


def _exit_on_term(signum: int, frame: Any) -> None:  # noqa: ARG001
    """SIGTERM from ``Pool.terminate`` unwinds the worker: its GPAW run is killed, its temp folder removed."""
    raise SystemExit(128 + signum)


def _init_worker(mlff: str, engine_kwargs: dict[str, Any]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_on_term)
    from dosmatgen.dos.gpaw_engine import GPAWSiteDOSEngine
    from dosmatgen.evaluate.mlff import get_calculator, limit_threads

    limit_threads(1)
    _STATE["calc"] = get_calculator(mlff, device="cpu") if mlff != "none" else None
    _STATE["mlff"] = mlff
    _STATE["engine"] = GPAWSiteDOSEngine(**engine_kwargs)


def mlff_label(mlff: str) -> str:
    """The name a relaxation with the force field ``mlff`` is recorded under in provenance.

    >>> mlff_label("sevenn"), mlff_label("chgnet")
    ('sevenn-7net-0', 'chgnet')
    """
    return "sevenn-7net-0" if mlff == "sevenn" else mlff


def relax_record(rec: CrystalRecord, calc: Any, fmax: float, steps: int, mlff: str = "sevenn") -> CrystalRecord:
    """MLFF-relax ``rec`` keeping its space group; the relaxed record's provenance gains the MLFF
    energy per atom, convergence, volume ratio and ``mlff`` (:func:`mlff_label`).
    :class:`DataError` when the relaxation blows up or collapses atoms."""
    from ase.constraints import FixSymmetry

    from dosmatgen.evaluate.mlff import relax

    atoms = rec.to_atoms()
    v0 = atoms.get_volume()
    try:
        atoms.set_constraint(FixSymmetry(atoms, symprec=1e-3))
    except Exception:  # noqa: BLE001 - symmetry analysis failure: relax without the constraint
        pass
    relaxed, energy, converged = relax(atoms, calc, fmax=fmax, steps=steps)
    relaxed.set_constraint()
    v1 = relaxed.get_volume()
    if not np.isfinite(energy) or not (1 / 3 < v1 / v0 < 3):
        raise DataError(f"{rec.structure_id}: MLFF relaxation blew up (energy {energy}, volume {v0:.1f} -> {v1:.1f})")
    prov = dict(rec.provenance, mlff_energy_per_atom=round(energy / len(relaxed), 5),
                mlff_converged=bool(converged), volume_ratio=round(v1 / v0, 4), mlff=mlff_label(mlff))
    new = CrystalRecord(rec.structure_id, relaxed.numbers, relaxed.get_scaled_positions(wrap=True),
                        relaxed.cell.array, None, prov)
    d = new.min_distance()
    if d < max(MIN_DISTANCE, 1.0):
        raise DataError(f"{rec.structure_id}: MLFF relaxation collapsed atoms (min distance {d:.2f} Å)")
    return new


def _work(args: tuple[LabelCandidate, float, int]) -> dict[str, Any]:
    cand, fmax, steps = args
    t0 = time.time()
    out: dict[str, Any] = {"id": cand.structure_id, **cand.ledger_fields()}
    stage = "build"
    rec = None
    try:
        rec = cand.build()
        calc = _STATE.get("calc")
        if calc is not None and cand.relax:
            stage = "relax"
            rec = relax_record(rec, calc, fmax, steps, _STATE["mlff"])
        stage = "dft"
        t1 = time.time()
        labelled, res = _STATE["engine"].label(rec)
        out.update(status="done", record=labelled, seconds=round(time.time() - t0, 1),
                   seconds_relax=round(t1 - t0, 1), seconds_dft=round(res.seconds, 1), gap=round(res.gap, 3),
                   spin=res.spin_polarised, natoms=rec.num_atoms)
    except Exception as exc:  # noqa: BLE001 - every failure is recorded, never fatal
        out.update(status="failed", stage=stage, reason=f"{type(exc).__name__}: {exc}"[:500],
                   seconds=round(time.time() - t0, 1))
        if rec is not None:  # the geometry that failed, for diagnosis
            out["lattice"] = np.round(rec.lattice, 4).tolist()
    return out


def command_line() -> str:
    """How this process was started, in a form that can be pasted back into a shell."""
    argv = list(sys.argv)
    if argv and argv[0].endswith(os.path.join("dev_scripts", "builtin", "__main__.py")):
        return "python -m dev_scripts.builtin " + " ".join(argv[1:])
    if argv and os.path.basename(argv[0]) == "dosmatgen":
        return "dosmatgen " + " ".join(argv[1:])
    return " ".join(argv)


# ---- the build --------------------------------------------------------------------------------
def versions() -> dict[str, str]:
    import ase

    import dosmatgen

    out = {"dosmatgen": getattr(dosmatgen, "__version__", "?"), "ase": ase.__version__, "gpaw": "22.8 (Debian)"}
    try:
        import sevenn

        out["sevenn"] = sevenn.__version__
    except ImportError:
        pass
    return out


def build(out_dir: str | Path, n_max: int = 4000, seed: int = 0, workers: int = 2, timeout_s: float = 600.0,
          mlff: str = "sevenn", fmax: float = DEFAULT_FMAX, steps: int = DEFAULT_RELAX_STEPS, shard_size: int = 25,
          flush_s: float = 600.0, engine_kwargs: dict[str, Any] | None = None, progress: bool = True,
          only: list[str] | None = None, part: tuple[int, int] | None = None, source: str = "prototypes",
          pool: str | Path | None = None, max_atoms: int | None = None,
          retry_failed: str | None = None) -> dict[str, int]:
    """Relax and label the first ``n_max`` candidates of ``source`` (:func:`source_candidates`;
    ``pool`` and ``max_atoms`` are the mp20 source's) not yet in the ledgers of ``out_dir``, and
    those whose recorded failure reason contains ``retry_failed`` (after a protocol fix)
    (with ``part=(I, K)``: only part I of K, see the module docstring).  A source whose crystals
    are not relaxed (mp20) loads no MLFF.  Skipped rows of the source are reported on stderr
    (:func:`report_skipped`).

    Returns counts ``{"done", "failed", "todo"}`` for this run.  Safe to interrupt (SIGINT/SIGTERM
    flush the buffered records) and to rerun.
    """
    check_retry_text(retry_failed)
    check_build_settings(n_max=n_max, seed=seed, workers=workers, timeout_s=timeout_s, mlff=mlff, fmax=fmax,
                         steps=steps, shard_size=shard_size, engine_kwargs=engine_kwargs or {})
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ledger = without_retried_failures(read_ledger(out_dir), retry_failed)
    all_cands, skipped = source_candidates(source, seed, n_max, pool, max_atoms)
    report_skipped(source, skipped)
    todo = [c for c in select_part(all_cands, part) if c.structure_id not in ledger
            and (not only or c.structure_id in set(only))]
    if not todo:
        return {"done": 0, "failed": 0, "todo": 0}
    mlff = mlff if any(c.relax for c in todo) else "none"
    ekw = {"timeout_s": timeout_s, **(engine_kwargs or {})}
    meta = {"command": command_line(), "source": source, "seed": seed, "n_max": n_max, "mlff": mlff,
            "versions": versions(), "part": None if part is None else f"{part[0]}/{part[1]}"}
    if source == "mp20":
        from dev_scripts.builtin.mp20 import DEFAULT_MAX_ATOMS, DEFAULT_POOL

        meta.update(pool=str(pool if pool is not None else DEFAULT_POOL),
                    max_atoms=max_atoms if max_atoms is not None else DEFAULT_MAX_ATOMS)
    writer = _ShardWriter(out_dir, *part_files(part, source), meta, ekw)
    _label_in_pool(todo, writer, workers, mlff, ekw, fmax, steps, shard_size, flush_s, progress)
    return {**writer.counts, "todo": len(todo)}


def check_build_settings(*, n_max: int, seed: int, workers: int, timeout_s: float, mlff: str, fmax: float,
                         steps: int, shard_size: int, engine_kwargs: dict[str, Any]) -> None:
    """:class:`~dosmatgen.errors.ConfigError` naming the first setting a build cannot honour, in the
    parent before any pool starts: a worker that dies while starting (an unknown MLFF, a negative
    timeout) is replaced by the pool at once, over and over, and the build hangs."""
    import math
    import shutil

    from dosmatgen.errors import ConfigError
    from dosmatgen.evaluate.mlff import canonical_mlff

    if mlff != "none":
        canonical_mlff(mlff)
    for flag, value, low in (("--n-max", n_max, 1), ("--seed", seed, 0), ("--workers", workers, 1),
                             ("--steps", steps, 0), ("--shard-size", shard_size, 1),
                             ("--maxiter", engine_kwargs.get("maxiter", 1), 1)):
        if int(value) != value or value < low:
            raise ConfigError(f"{flag} must be an integer >= {low}, got {value}")
    for flag, value in (("--timeout", timeout_s), ("--fmax", fmax)):
        if not (math.isfinite(value) and value > 0):
            raise ConfigError(f"{flag} must be a finite number > 0, got {value}")
    python = engine_kwargs.get("python")
    if python is not None and not (os.path.isfile(python) or shutil.which(python)):
        raise ConfigError(f"--gpaw-python {python} does not exist")


class _ShardWriter:
    """The output of :func:`build`: labelled records are buffered and written as the next shard of
    ``out_dir`` with their ledger entries (:meth:`flush`); a failure goes to the ledger at once."""

    def __init__(self, out_dir: Path, ledger_name: str, shard_prefix: str, meta: dict[str, Any],
                 engine_kwargs: dict[str, Any]) -> None:
        from dosmatgen.dos.gpaw_engine import GPAWSiteDOSEngine

        self.out_dir, self.ledger_name, self.shard_prefix = out_dir, ledger_name, shard_prefix
        self.meta = dict(meta, protocol=GPAWSiteDOSEngine(**engine_kwargs).protocol())
        self.records: list[CrystalRecord] = []
        self.entries: list[dict[str, Any]] = []
        self.last_flush = time.time()
        self.counts = {"done": 0, "failed": 0}

    def add(self, result: dict[str, Any]) -> None:
        """One result of :func:`_work`: its record is buffered, or its failure recorded (and printed)."""
        entry = {k: v for k, v in result.items() if k != "record"}
        entry["time"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        if result["status"] == "done":
            self.records.append(result["record"])
            self.entries.append(entry)
        else:
            _append_ledger(self.out_dir, [entry], self.ledger_name)
            print(f"[failed] {entry['id']}: {entry.get('reason')}", file=sys.stderr, flush=True)
        self.counts[result["status"]] += 1

    def flush(self) -> None:
        """Write the buffered records as the next shard, then their ledger entries (naming it)."""
        from dosmatgen.data.store import save_records

        if self.records:
            path = self.out_dir / f"{self.shard_prefix}{_next_shard_index(self.out_dir, self.shard_prefix):05d}.npz"
            save_records(path, self.records, self.meta)
            for e in self.entries:
                e["shard"] = path.name
            _append_ledger(self.out_dir, self.entries, self.ledger_name)
        self.records, self.entries, self.last_flush = [], [], time.time()


def _label_in_pool(todo: list[LabelCandidate], writer: _ShardWriter, workers: int, mlff: str,
                   engine_kwargs: dict[str, Any], fmax: float, steps: int, shard_size: int, flush_s: float,
                   progress: bool) -> None:
    """Relax and label ``todo`` in ``workers`` spawned processes (:func:`_work`), flushing
    ``writer`` every ``shard_size`` records or ``flush_s`` seconds and when stopped (SIGINT/SIGTERM).

    A stop is a flag (:class:`~dosmatgen.stopping.StopFlag`) checked at least once a second, never
    an exception from the signal handler, and further signals are ignored: the finished records are
    written however often the build is told to stop."""
    import multiprocessing as mp

    from dosmatgen.progress import bar as progress_bar
    from dosmatgen.stopping import StopFlag
    from dosmatgen.threads import single_threaded_children

    with single_threaded_children():
        pool = mp.get_context("spawn").Pool(processes=max(1, workers), initializer=_init_worker,
                                            initargs=(mlff, engine_kwargs))
    bar = progress_bar(progress, total=len(todo), desc="built-in DOS", unit="struct", smoothing=0.05,
                       mininterval=5.0)
    with StopFlag(second_interrupt_aborts=False) as stop:
        try:
            results = pool.imap_unordered(_work, [(c, fmax, steps) for c in todo], chunksize=1)
            while not stop.raised:
                try:
                    res = results.next(timeout=1.0)
                except mp.TimeoutError:
                    continue
                except StopIteration:
                    break
                writer.add(res)
                bar.set_postfix(**writer.counts)
                bar.update(1)
                if len(writer.records) >= shard_size or (writer.records and time.time() - writer.last_flush > flush_s):
                    writer.flush()
            if stop.raised:
                print("interrupted: writing finished records", file=sys.stderr, flush=True)
        finally:
            writer.flush()
            bar.close()
            pool.terminate()
            pool.join()


def merge(out_dir: str | Path, store_path: str | Path, command: str | None = None) -> dict[str, Any]:
    """:func:`dosmatgen.data.store.merge_shards` recording this process's :func:`command_line`."""
    return merge_shards(out_dir, store_path, command or command_line())


# ---- command line -----------------------------------------------------------------------------
def add_build_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m dev_scripts.builtin build``."""
    from dev_scripts.builtin.mp20 import DEFAULT_MAX_ATOMS, DEFAULT_POOL

    parser.add_argument("--out", default="resources/builtin", help="shard directory (resumable)")
    parser.add_argument("--source", choices=SOURCES, default=SOURCES[0],
                        help="candidates: prototype crystals (default) or real MP-20 crystals from --pool, "
                             "labelled unrelaxed (--mlff is then unused), cheapest first")
    parser.add_argument("--pool", default=None, metavar="PATH",
                        help=f"MP-20 pool JSON of --source mp20 (default: {DEFAULT_POOL})")
    parser.add_argument("--max-atoms", type=int, default=DEFAULT_MAX_ATOMS, metavar="N",
                        help=f"--source mp20: only cells with at most N atoms (default: {DEFAULT_MAX_ATOMS})")
    parser.add_argument("--n-max", type=int, default=4000, help="number of candidates to consider")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2, help="parallel GPAW jobs (one per core)")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="GPAW CPU seconds per structure (the wall clock allows 10 times that, so a "
                             "worker slowed by other work on the machine is not failed)")
    parser.add_argument("--mlff", default="sevenn", help="relaxation force field (sevenn, chgnet, orb, none)")
    parser.add_argument("--fmax", type=float, default=DEFAULT_FMAX)
    parser.add_argument("--steps", type=int, default=DEFAULT_RELAX_STEPS)
    parser.add_argument("--shard-size", type=int, default=25)
    parser.add_argument("--part", default=None, metavar="I/K",
                        help="label only part I of K (every K-th candidate), with its own ledger and shards, "
                             "so K jobs (e.g. a SLURM array) can share --out")
    parser.add_argument("--retry-failed", default=None, metavar="TEXT",
                        help="also redo recorded failures whose reason contains TEXT (e.g. 'OverflowError' "
                             "after the worker learnt to avoid it); the new entry supersedes the failure")
    parser.add_argument("--maxiter", type=int, default=100, help="SCF iteration cap per mixer setting")
    parser.add_argument("--gpaw-python", default="/usr/bin/python3",
                        help="interpreter (or wrapper script) that can import gpaw; default Debian's")
    parser.add_argument("--store", default=None, help="merge shards into this store when done")
    parser.add_argument("--merge-only", action="store_true", help="only merge existing shards into --store")


def run_build(args: argparse.Namespace) -> int:
    """What ``python -m dev_scripts.builtin build`` runs."""
    if args.merge_only:
        if not args.store:
            raise DataError("--merge-only needs --store PATH")
        meta = merge(args.out, args.store)
        print(f"merged {meta['n_records']} records ({meta['n_atoms']} sites, {len(meta['elements'])} elements) "
              f"into {args.store}")
        return 0
    from dosmatgen.io import output_lock

    part = None if args.part is None else parse_part(args.part)
    engine_kwargs = {"maxiter": args.maxiter, "python": args.gpaw_python}
    check_build_settings(n_max=args.n_max, seed=args.seed, workers=args.workers, timeout_s=args.timeout, mlff=args.mlff,
                         fmax=args.fmax, steps=args.steps, shard_size=args.shard_size, engine_kwargs=engine_kwargs)
    # parts of one build share --out by design; two runs of the same part (or of the whole build) do not
    claim = Path(args.out) / (f".build-{args.source}" + ("" if part is None else f"-part{part[0]}of{part[1]}"))
    with output_lock(claim, "--out"):
        counts = build(args.out, n_max=args.n_max, seed=args.seed, workers=args.workers, timeout_s=args.timeout,
                       mlff=args.mlff, fmax=args.fmax, steps=args.steps, shard_size=args.shard_size,
                       engine_kwargs=engine_kwargs, part=part,
                       source=args.source, pool=args.pool, max_atoms=args.max_atoms, retry_failed=args.retry_failed)
    print(f"built {counts['done']} records, {counts['failed']} failed, of {counts['todo']} to do")
    if args.store:
        meta = merge(args.out, args.store)
        print(f"merged {meta['n_records']} records into {args.store}")
    return 0
