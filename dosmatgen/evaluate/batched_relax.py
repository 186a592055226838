"""Batched MLFF relaxation: many crystals at once with torch-sim's FIRE + Fréchet cell filter.

The algorithm is the one of :func:`dosmatgen.evaluate.mlff.relax` (ASE ``FIRE`` on a
``FrechetCellFilter``, ASE's FIRE flavour, ``maxstep`` 0.2 Å, cell factor = number of atoms, zero
pressure), which stays the reference for one-off use; here every crystal of a batch takes its
step from one network call on the whole batch (paper §3.1: ~70k relaxations for Tables 1-2).

In-flight batching: crystals enter the batch until it holds ``max_atoms`` atoms; after every
FIRE step each crystal is checked and leaves the batch when

- it converged: max |F| over atoms and cell rows below ``fmax`` (ASE's criterion);
- it ran ``steps`` FIRE steps (not converged, like ASE running out of steps);
- it blew up (dropped, counted by reason, never stalling the others): ``non_finite`` energy,
  forces or cell; ``volume_blowup`` (volume changed by more than ``max_volume_ratio``, as
  :func:`~dosmatgen.evaluate.mlff.relax`); ``below_energy_floor`` (energy under the caller's
  per-crystal floor, e.g. the formation-energy plausibility floor); ``error:<Exception>``
  (the force field raised on that crystal alone).

Freed places are refilled from the queue. A step that raises is retried one crystal at a time, so
one bad crystal is dropped and the rest go on; a step out of memory halves the atom budget and sends
half the batch back to the queue. ``max_atoms=None`` sizes the batch from memory
(:meth:`BatchedRelaxer.auto_max_atoms`).

SevenNet runs through sevenn's own torch-sim wrapper (``sevenn.torchsim.SevenNetModel``).
sevenn 0.13 imports ``torch_sim.neighbors.torchsim_nl``, which torch-sim 0.3.0 (the newest for
Python 3.11) does not have; :func:`per_system_vesin_nl` supplies it from 0.3.0's
``vesin_nl_ts``, one crystal at a time.

Example (SevenNet on CPU)::

    from ase.build import bulk
    relaxer = BatchedRelaxer("sevenn", fmax=0.05, steps=200)
    outcomes = relaxer.relax([bulk("Si", cubic=True), bulk("Cu")])
    outcomes[0].energy, outcomes[0].status        # (-43.3..., 'converged')
"""

from __future__ import annotations

import importlib.metadata
import itertools
import re
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from dosmatgen.errors import ConfigError
from dosmatgen.evaluate.mlff import (DEFAULT_FMAX, DEFAULT_RELAX_STEPS, MAX_VOLUME_RATIO, MLFF_ALIASES, check_weights,
                                     load_orb_v2, needs_package)

#: The torch-sim release this module is written against (``scripts/setup.sh`` pins it).
TORCH_SIM_VERSION = "0.3.0"
#: Force fields with a batched (torch-sim) wrapper; CHGNet has none in torch-sim 0.3.0.
BATCHED_MLFFS = ("sevenn", "orb")
#: Largest automatic batch (atoms): on a CPU larger batches stop paying (the forward pass is
#: already compute-bound at a few hundred atoms) and only cost memory.
MAX_ATOMS_CAP = {"cpu": 1024, "cuda": 60_000}
#: Smallest automatic batch (atoms).
MIN_ATOMS = 16
#: Memory per atom assumed at least (bytes), so a noisy probe cannot ask for a huge batch.
MIN_BYTES_PER_ATOM = 256 * 1024


@dataclass
class RelaxOutcome:
    """One crystal's relaxation.

    ``status`` is ``converged``, ``max_steps`` or ``dropped:<reason>``; ``energy`` and
    ``initial_energy`` are total energies (eV) of the final and the given geometry; ``atoms`` is
    the final geometry (``None`` when it is not finite)."""

    atoms: Any
    energy: float
    initial_energy: float
    converged: bool
    steps: int
    status: str

    @property
    def dropped(self) -> bool:
        return self.status.startswith("dropped:")


@dataclass
class _Slot:
    """A crystal waiting in the queue: its index and, once initialised, its optimiser state."""

    index: int
    state: Any = None
    steps: int = 0
    volume0: float = float("nan")
    initial_energy: float = float("nan")


@dataclass
class _Run:
    """What one :meth:`BatchedRelaxer.relax` call works on: the crystals, the queue, the batch
    (its torch-sim ``state`` and the ``active`` slots, in the same order) and the outcomes."""

    atoms: Sequence[Any]
    floors: np.ndarray | None
    on_done: Callable[[int, RelaxOutcome], None] | None
    bar: Any
    queue: list[_Slot]
    out: list[RelaxOutcome | None]
    state: Any = None
    active: list[_Slot] = field(default_factory=list)

    def record(self, index: int, outcome: RelaxOutcome) -> None:
        """Store crystal ``index``'s outcome and report it (progress bar, ``on_done``)."""
        self.out[index] = outcome
        self.bar.update(1)
        if self.on_done is not None:
            self.on_done(index, outcome)


def per_system_vesin_nl(positions: torch.Tensor, row_vector_cell: torch.Tensor, pbc: Any, cutoff: torch.Tensor,
                        system_idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Neighbour list of a batch with the contract of torch-sim ≥ 0.4's ``torchsim_nl``.

    Returns ``(edge_index (2, E), system of each edge (E,), unit cell shifts (E, 3))``, from
    torch-sim 0.3.0's ``vesin_nl_ts`` applied to each crystal of the batch (periodic in 3D)."""
    import torch_sim.neighbors as tsn

    n = int(system_idx.max()) + 1
    cells = row_vector_cell.reshape(n, 3, 3)
    counts = torch.bincount(system_idx, minlength=n).tolist()
    maps, systems, shifts, start = [], [], [], 0
    for b, k in enumerate(counts):
        mapping, shift = tsn.vesin_nl_ts(positions[start:start + k], cells[b], True, cutoff)
        maps.append(mapping + start)
        systems.append(torch.full((mapping.shape[1],), b, dtype=torch.long, device=positions.device))
        shifts.append(shift)
        start += k
    return torch.cat(maps, 1), torch.cat(systems), torch.cat(shifts)


def _require_torch_sim() -> Any:
    try:
        import torch_sim
    except ImportError as exc:
        raise ConfigError(f"batched relaxation needs torch-sim-atomistic=={TORCH_SIM_VERSION} "
                          f"(pip install torch-sim-atomistic=={TORCH_SIM_VERSION}); or use relaxer: ase") from exc
    have = importlib.metadata.version("torch-sim-atomistic")
    if have != TORCH_SIM_VERSION:
        raise ConfigError(f"torch-sim-atomistic {have} is installed; dosmatgen's batched relaxation is written "
                          f"for {TORCH_SIM_VERSION} (pip install torch-sim-atomistic=={TORCH_SIM_VERSION})")
    return torch_sim


def load_batched_model(name: str = "sevenn", device: str = "cpu", weights: str | Path | None = None) -> Any:
    """A torch-sim model for the MLFF ``name`` (see :data:`BATCHED_MLFFS`).

    Raises:
        ConfigError: unknown name, no batched wrapper, package not installed, weights missing.
    """
    name = MLFF_ALIASES.get(name.lower(), name.lower())
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if name not in BATCHED_MLFFS:
        raise ConfigError(f"MLFF {name!r} has no batched (torch-sim) wrapper; batched MLFFs: {BATCHED_MLFFS}; "
                          "use relaxer: ase for it")
    check_weights(name, weights)
    _require_torch_sim()
    import torch_sim.neighbors as tsn

    if name == "orb":
        with needs_package("orb", "orb-models"), warnings.catch_warnings():
            # torch-sim 0.3.0 imports orb's graph_regressor (gone in orb-models 0.5; type hints only) and warns
            warnings.filterwarnings("ignore", "Orb import failed")
            from torch_sim.models.orb import OrbModel

            return OrbModel(model=load_orb_v2(device, weights), device=device)
    with needs_package("sevenn", "sevenn"):
        import sevenn  # noqa: F401
    if not hasattr(tsn, "torchsim_nl"):  # sevenn 0.13 imports it; torch-sim 0.3.0 lacks it
        tsn.torchsim_nl = per_system_vesin_nl
    from sevenn.torchsim import SevenNetModel
    from sevenn.util import load_checkpoint

    checkpoint = load_checkpoint(str(weights) if weights is not None else "7net-0")
    return SevenNetModel(model=checkpoint.build_model(), modal=None, neighbor_list_fn=per_system_vesin_nl,
                         device=device)


def _is_oom(exc: BaseException) -> bool:
    """Whether ``exc`` says the batch did not fit in memory (CUDA or CPU allocator)."""
    if isinstance(exc, (MemoryError, getattr(torch, "OutOfMemoryError", MemoryError))):
        return True
    return isinstance(exc, RuntimeError) and bool(
        re.search(r"out of memory|can't allocate memory|not enough memory", str(exc), re.I))


def _free_bytes(device: torch.device) -> float:
    if device.type == "cuda":
        return float(torch.cuda.mem_get_info(device)[0])
    try:
        text = Path("/proc/meminfo").read_text()
        return float(re.search(r"MemAvailable:\s+(\d+) kB", text).group(1)) * 1024
    except (OSError, AttributeError):
        return 4.0 * 2 ** 30


class BatchedRelaxer:
    """Relax many crystals at once (see the module doc for the algorithm and the drop rules).

    Args:
        mlff, device, weights: the force field of :func:`load_batched_model`, unless ``model`` (an
            already built torch-sim model: tests, or one model shared by many calls) is given.
        fmax, steps: force criterion (eV/Å, as ASE's FIRE) and most FIRE steps per crystal.
        max_atoms: atoms per batch; ``None`` sizes it from memory.
        max_volume_ratio: a crystal whose volume changes by more than this factor is dropped.
    """

    def __init__(self, mlff: str = "sevenn", device: str = "cpu", fmax: float = DEFAULT_FMAX, steps: int = DEFAULT_RELAX_STEPS,
                 max_atoms: int | None = None, max_volume_ratio: float = MAX_VOLUME_RATIO, model: Any = None,
                 weights: str | Path | None = None) -> None:
        if not (np.isfinite(fmax) and fmax > 0):
            raise ConfigError(f"fmax must be a positive number, got {fmax}")
        if int(steps) < 0:
            raise ConfigError(f"steps must be >= 0, got {steps}")
        if max_atoms is not None and int(max_atoms) < 1:
            raise ConfigError(f"max_atoms must be >= 1, got {max_atoms}")
        if not max_volume_ratio > 1:
            raise ConfigError(f"max_volume_ratio must be > 1, got {max_volume_ratio}")
        self.ts = _require_torch_sim()
        self.model = model if model is not None else load_batched_model(mlff, device, weights)
        self.fmax, self.steps, self.max_volume_ratio = float(fmax), int(steps), float(max_volume_ratio)
        self.max_atoms = int(max_atoms) if max_atoms is not None else None
        self.init_fn, self.update_fn = self.ts.frechet_cell_fire(model=self.model)
        self.oom_halvings = 0
        self.drops: Counter = Counter()

    def auto_max_atoms(self, atoms: Sequence[Any]) -> int:
        """Atoms per batch from one forward pass on the first crystals of ``atoms`` (ASE Atoms; those
        that start before 64 atoms are reached): a quarter of the free memory over the measured
        memory per atom (CUDA: ``max_memory_allocated``; CPU: peak RSS), within [:data:`MIN_ATOMS`,
        :data:`MAX_ATOMS_CAP` of the device type]."""
        from dosmatgen.device import PeakMemory

        probe = [a for a, before in zip(atoms, itertools.accumulate(map(len, atoms), initial=0)) if before < 64]
        device = torch.device(self.model.device)
        cap = MAX_ATOMS_CAP.get(device.type, MAX_ATOMS_CAP["cuda"])
        for candidates in [list(probe)] + [[a] for a in probe]:  # a crystal the model refuses is left out
            try:
                state = self.ts.initialize_state(candidates, device, self.model.dtype)
                with PeakMemory(device) as mem:
                    self.model(state)
            except Exception:  # noqa: BLE001 - the relaxation loop reports it per crystal
                continue
            per_atom = max((mem.peak_mib - mem.before_mib) * 2 ** 20 / max(state.n_atoms, 1), MIN_BYTES_PER_ATOM)
            return int(np.clip(0.25 * _free_bytes(device) / per_atom, MIN_ATOMS, cap))
        return MIN_ATOMS

    def _init(self, slots: list[_Slot], atoms: Sequence[Any]) -> Any:
        """Optimiser states of ``slots`` (energies, forces and cell forces at the given geometry)."""
        state = self.ts.initialize_state([atoms[s.index] for s in slots], torch.device(self.model.device),
                                         self.model.dtype)
        state = self.init_fn(state)
        vol = state.volume.detach().cpu().numpy()
        energy = state.energy.detach().cpu().numpy()
        for k, s in enumerate(slots):
            s.volume0, s.initial_energy = float(vol[k]), float(energy[k])
        return state

    def _step_one_by_one(self, run: _Run, state: Any) -> None:
        """One FIRE step per crystal of ``state`` (the batch before its batched step raised): a
        crystal that raises again alone is dropped, the others are re-batched."""
        kept_states, kept = [], []
        for k, s in enumerate(run.active):
            try:
                kept_states.append(self.update_fn(state[[k]]))
                kept.append(s)
            except Exception as exc:  # the force field raised on this crystal alone
                s.steps += 1
                run.record(s.index, self._outcome(None, s, f"dropped:error:{type(exc).__name__}"))
        run.state = self.ts.concatenate_states(kept_states) if kept_states else None
        run.active = kept

    def _check(self, state: Any, slots: list[_Slot], floors: np.ndarray | None) -> tuple[list[int], list[str]]:
        """Indices (into the batch) of crystals that leave it, and each one's status."""
        n = state.n_systems
        sys_idx = state.system_idx
        fnorm = torch.linalg.norm(state.forces.detach(), dim=1)
        finite_atoms = torch.isfinite(state.forces.detach()).all(dim=1) & torch.isfinite(state.positions.detach()).all(dim=1)
        fmax_sys = torch.zeros(n, dtype=fnorm.dtype, device=fnorm.device).scatter_reduce(
            0, sys_idx, torch.nan_to_num(fnorm, nan=np.inf), "amax", include_self=False)
        bad_sys = torch.zeros(n, dtype=torch.int64, device=fnorm.device).scatter_reduce(  # CUDA has no bool scatter
            0, sys_idx, (~finite_atoms).to(torch.int64), "amax", include_self=False).bool()
        cell_f = torch.linalg.norm(state.cell_forces.detach(), dim=2).max(dim=1).values
        energy = state.energy.detach()
        cell_ok = torch.isfinite(state.row_vector_cell.detach()).reshape(n, -1).all(dim=1)
        finite = (~bad_sys) & torch.isfinite(energy) & torch.isfinite(cell_f) & cell_ok
        fmax_all = torch.maximum(fmax_sys, cell_f).cpu().numpy()
        finite = finite.cpu().numpy()
        energy = energy.cpu().numpy()
        volume = np.abs(state.volume.detach().cpu().numpy())
        leave, status = [], []
        for k, s in enumerate(slots):
            why = None
            if not finite[k]:
                why = "dropped:non_finite"
            elif not (1.0 / self.max_volume_ratio < volume[k] / s.volume0 < self.max_volume_ratio):
                why = "dropped:volume_blowup"
            elif floors is not None and energy[k] < floors[s.index]:
                why = "dropped:below_energy_floor"
            elif fmax_all[k] < self.fmax:
                why = "converged"
            elif s.steps >= self.steps:
                why = "max_steps"
            if why is not None:
                leave.append(k)
                status.append(why)
        return leave, status

    def _outcome(self, single: Any, s: _Slot, status: str) -> RelaxOutcome:
        energy = float(single.energy.detach().cpu().numpy()[0]) if single is not None else float("nan")
        atoms = None
        if single is not None and bool(torch.isfinite(single.positions).all()) and bool(torch.isfinite(single.cell).all()):
            atoms = single.to_atoms()[0]
        if status.startswith("dropped:"):
            self.drops[status.split(":", 1)[1]] += 1
            energy = float("nan")  # a dropped crystal's energy is not a relaxed energy
        return RelaxOutcome(atoms=atoms, energy=energy, initial_energy=s.initial_energy,
                            converged=status == "converged", steps=s.steps, status=status)

    def relax(self, atoms: Sequence[Any], energy_floor: Sequence[float] | None = None,
              progress: bool = False, on_done: Callable[[int, RelaxOutcome], None] | None = None) -> list[RelaxOutcome]:
        """Relax every crystal of ``atoms`` (ASE Atoms); outcomes in input order.

        Args:
            energy_floor: per-crystal total energy (eV) below which the crystal is dropped.
            on_done: called with ``(index, outcome)`` as each crystal leaves the batch.
        """
        n = len(atoms)
        floors = None if energy_floor is None else np.asarray(energy_floor, dtype=float)
        if floors is not None and floors.shape != (n,):
            raise ConfigError(f"energy_floor has {floors.shape} values for {n} crystals")
        if n == 0:
            return []
        if self.max_atoms is None:
            self.max_atoms = self.auto_max_atoms(atoms)
        run = _Run(atoms, floors, on_done, tqdm(total=n, desc="relax (batched)", unit="crystal", disable=not progress),
                   queue=[_Slot(i) for i in range(n)], out=[None] * n)
        try:
            while run.queue or run.active:
                if self._refill(run) and run.state is not None:
                    self._leave(run, *self._check(run.state, run.active, run.floors))  # converged before this step?
                    if run.state is not None:
                        self._step(run)
        finally:
            run.bar.close()
        return list(run.out)  # every crystal has an outcome once the loop ends

    def _refill(self, run: _Run) -> bool:
        """Move crystals from the queue into the batch up to the atom budget (a crystal larger than
        the budget goes alone); ``False`` when initialising them ran out of memory (the atom budget
        is halved and they wait in the queue again)."""
        room = self.max_atoms - sum(len(run.atoms[s.index]) for s in run.active)
        taken: list[_Slot] = []
        while run.queue and (len(run.atoms[run.queue[0].index]) <= room or not (run.active or taken)):
            taken.append(run.queue.pop(0))
            room -= len(run.atoms[taken[-1].index])
        fresh = [s for s in taken if s.state is None]
        warm = [s for s in taken if s.state is not None]
        parts = []
        if fresh:
            try:
                parts.append(self._init(fresh, run.atoms))
            except Exception as exc:
                if _is_oom(exc) and len(fresh) > 1:
                    self._shrink()
                    run.queue[:0] = taken
                    return False
                fresh, parts = self._init_one_by_one(run, fresh)
        parts += [s.state for s in warm]
        for s in warm:
            s.state = None
        if parts:
            run.state = self.ts.concatenate_states(([run.state] if run.state is not None else []) + parts)
            run.active = run.active + fresh + warm
        return True

    def _init_one_by_one(self, run: _Run, fresh: list[_Slot]) -> tuple[list[_Slot], list[Any]]:
        """Initialise ``fresh`` one crystal at a time (after initialising them together raised): a
        crystal the force field refuses is dropped alone. Returns the others and their states."""
        kept, states = [], []
        for s in fresh:
            try:
                states.append(self._init([s], run.atoms))
                kept.append(s)
            except Exception as exc:
                run.record(s.index, self._outcome(None, s, f"dropped:error:{type(exc).__name__}"))
        return kept, states

    def _leave(self, run: _Run, leave: list[int], statuses: list[str]) -> None:
        """Record the outcomes of the batch's crystals ``leave`` and take them out of the batch."""
        if not leave:
            return
        for k, status in zip(leave, statuses):
            run.record(run.active[k].index, self._outcome(run.state[[k]], run.active[k], status))
        keep = [k for k in range(len(run.active)) if k not in set(leave)]
        run.state, run.active = (run.state[keep] if keep else None), [run.active[k] for k in keep]

    def _step(self, run: _Run) -> None:
        """One FIRE step of the batch. Out of memory: the atom budget is halved and the second half
        of the batch goes back to the queue; another error: the step is retried one crystal at a
        time and the crystals that raise alone are dropped."""
        backup = run.state.clone()
        try:
            run.state = self.update_fn(run.state)
        except Exception as exc:
            if _is_oom(exc) and len(run.active) > 1:
                self._shrink()
                half = len(run.active) // 2
                for k, s in enumerate(run.active[half:], start=half):
                    s.state = backup[[k]]
                run.queue[:0] = run.active[half:]
                run.state, run.active = backup[list(range(half))], run.active[:half]
                return
            self._step_one_by_one(run, backup)
        for s in run.active:
            s.steps += 1

    def _shrink(self) -> None:
        self.oom_halvings += 1
        self.max_atoms = max(1, int(self.max_atoms) // 2)


def relax_many(atoms: Sequence[Any], mlff: str = "sevenn", device: str = "cpu", fmax: float = DEFAULT_FMAX, steps: int = DEFAULT_RELAX_STEPS,
               max_atoms: int | None = None, energy_floor: Sequence[float] | None = None,
               progress: bool = False) -> list[RelaxOutcome]:
    """Relax ``atoms`` with a fresh :class:`BatchedRelaxer` (one call, one model)."""
    return BatchedRelaxer(mlff, device, fmax, steps, max_atoms).relax(atoms, energy_floor, progress)


