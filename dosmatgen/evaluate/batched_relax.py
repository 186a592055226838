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

Freed places are refilled from the queue. When a step raises, the batch is retried one crystal
at a time for that step, so one bad crystal is dropped and the rest go on. When a step runs out
of memory the atom budget is halved and half the batch goes back to the queue.

``max_atoms=None`` sizes the batch from memory: one forward pass on a probe batch measures the
memory per atom (CUDA: ``max_memory_allocated``; CPU: peak RSS), and the batch gets a quarter of
the free memory, capped at :data:`MAX_ATOMS_CAP` per device type.

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
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from dosmatgen.errors import ConfigError
from dosmatgen.evaluate.mlff import DEFAULT_FMAX, DEFAULT_RELAX_STEPS

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
    name = name.lower()
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if name not in BATCHED_MLFFS:
        raise ConfigError(f"MLFF {name!r} has no batched (torch-sim) wrapper; batched MLFFs: {BATCHED_MLFFS}; "
                          "use relaxer: ase for it")
    if weights is not None and not Path(weights).exists():
        raise ConfigError(f"{name} weights file {weights} does not exist")
    _require_torch_sim()
    import torch_sim.neighbors as tsn

    if name == "sevenn":
        try:
            import sevenn  # noqa: F401
        except ImportError as exc:
            raise ConfigError("MLFF 'sevenn' needs the sevenn package (pip install sevenn)") from exc
        if not hasattr(tsn, "torchsim_nl"):  # sevenn 0.13 imports it; torch-sim 0.3.0 lacks it
            tsn.torchsim_nl = per_system_vesin_nl
        from sevenn.torchsim import SevenNetModel
        from sevenn.util import load_checkpoint

        checkpoint = load_checkpoint(str(weights) if weights is not None else "7net-0")
        return SevenNetModel(model=checkpoint.build_model(), modal=None, neighbor_list_fn=per_system_vesin_nl,
                             device=device)
    try:
        from orb_models.forcefield import pretrained
        from torch_sim.models.orb import OrbModel
    except ImportError as exc:
        raise ConfigError("MLFF 'orb' needs the orb-models package (pip install orb-models)") from exc
    try:
        orbff = pretrained.orb_v2(weights_path=str(weights), device=device) if weights else pretrained.orb_v2(device=device)
    except Exception as exc:  # download failure offline
        raise ConfigError(f"ORB weights could not be loaded ({exc}); they need network access or a local "
                          "weights file") from exc
    return OrbModel(model=orbff, device=device)


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
        mlff: force-field name for :func:`load_batched_model`, ignored when ``model`` is given.
        device: torch device of the model.
        fmax: force criterion (eV/Å), as ASE's FIRE.
        steps: maximum FIRE steps per crystal.
        max_atoms: atoms per batch; ``None`` sizes it from memory.
        max_volume_ratio: a crystal whose volume changes by more than this factor is dropped.
        model: an already built torch-sim model (tests, or one model shared by many calls).
    """

    def __init__(self, mlff: str = "sevenn", device: str = "cpu", fmax: float = DEFAULT_FMAX, steps: int = DEFAULT_RELAX_STEPS,
                 max_atoms: int | None = None, max_volume_ratio: float = 3.0, model: Any = None,
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

    # ------------------------------------------------------------------------------------------
    def auto_max_atoms(self, probe: Sequence[Any]) -> int:
        """Atoms per batch from one forward pass on ``probe`` (ASE Atoms): a quarter of the free
        memory over the measured memory per atom, within [:data:`MIN_ATOMS`, :data:`MAX_ATOMS_CAP`]."""
        from dosmatgen.device import PeakMemory

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

    def _step_one_by_one(self, state: Any, slots: list[_Slot]) -> tuple[Any, list[_Slot], list[tuple[_Slot, str]]]:
        """One FIRE step per crystal (after the batched step raised): crystals that raise again
        alone are returned as failures, the others re-batched."""
        kept_states, kept, failed = [], [], []
        for k, s in enumerate(slots):
            single = state[[k]]
            try:
                kept_states.append(self.update_fn(single))
                kept.append(s)
            except Exception as exc:  # the force field raised on this crystal alone
                failed.append((s, f"error:{type(exc).__name__}"))
        merged = self.ts.concatenate_states(kept_states) if kept_states else None
        return merged, kept, failed

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

    # ------------------------------------------------------------------------------------------
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
        out: list[RelaxOutcome | None] = [None] * n
        if n == 0:
            return []
        sizes = [len(a) for a in atoms]
        if self.max_atoms is None:
            probe, total = [], 0
            for a in atoms:
                if total >= 64:
                    break
                probe.append(a)
                total += len(a)
            self.max_atoms = self.auto_max_atoms(probe)
        queue: list[_Slot] = [_Slot(i) for i in range(n)]
        state, active = None, []
        bar = tqdm(total=n, desc="relax (batched)", unit="crystal", disable=not progress)

        def finish(k_list: list[int], statuses: list[str]) -> None:
            nonlocal state, active
            if not k_list:
                return
            keep = [k for k in range(len(active)) if k not in set(k_list)]
            leaving = [state[[k]] for k in k_list]
            for single, k, st in zip(leaving, k_list, statuses):
                o = self._outcome(single, active[k], st)
                out[active[k].index] = o
                bar.update(1)
                if on_done is not None:
                    on_done(active[k].index, o)
            state = state[keep] if keep else None
            active = [active[k] for k in keep]

        try:
            while queue or active:
                # refill up to the atom budget (a crystal larger than the budget goes alone)
                room = self.max_atoms - sum(sizes[s.index] for s in active)
                fresh, warm = [], []
                while queue and (sizes[queue[0].index] <= room or not (active or fresh or warm)):
                    s = queue.pop(0)
                    (warm if s.state is not None else fresh).append(s)
                    room -= sizes[s.index]
                parts = []
                if fresh:
                    try:
                        parts.append(self._init(fresh, atoms))
                    except Exception as exc:
                        if _is_oom(exc) and len(fresh) > 1:
                            self._shrink()
                            queue[:0] = fresh
                            continue
                        # initialise one by one: a crystal the force field refuses is dropped alone
                        ok = []
                        for s in fresh:
                            try:
                                parts.append(self._init([s], atoms))
                                ok.append(s)
                            except Exception as exc1:
                                out[s.index] = RelaxOutcome(None, float("nan"), float("nan"), False, 0,
                                                            f"dropped:error:{type(exc1).__name__}")
                                self.drops[f"error:{type(exc1).__name__}"] += 1
                                bar.update(1)
                                if on_done is not None:
                                    on_done(s.index, out[s.index])
                        fresh = ok
                parts += [s.state for s in warm]
                for s in warm:
                    s.state = None
                new_slots = fresh + warm
                if parts:
                    state = self.ts.concatenate_states(([state] if state is not None else []) + parts)
                    active = active + new_slots
                if state is None:
                    continue
                leave, statuses = self._check(state, active, floors)  # converged before this step?
                finish(leave, statuses)
                if state is None:
                    continue
                backup = state.clone()
                try:
                    state = self.update_fn(state)
                except Exception as exc:
                    if _is_oom(exc) and len(active) > 1:
                        self._shrink()
                        half = len(active) // 2
                        back = [backup[[k]] for k in range(half, len(active))]
                        for s, st in zip(active[half:], back):
                            s.state = st
                        queue[:0] = active[half:]
                        state, active = backup[list(range(half))], active[:half]
                        continue
                    state, kept, failed = self._step_one_by_one(backup, active)
                    for s, why in failed:
                        s.steps += 1
                        out[s.index] = self._outcome(None, s, f"dropped:{why}")
                        bar.update(1)
                        if on_done is not None:
                            on_done(s.index, out[s.index])
                    active = kept
                    if state is None:
                        continue
                for s in active:
                    s.steps += 1
        finally:
            bar.close()
        return list(out)  # every crystal has an outcome once the loop ends

    def _shrink(self) -> None:
        self.oom_halvings += 1
        self.max_atoms = max(1, int(self.max_atoms) // 2)


def relax_many(atoms: Sequence[Any], mlff: str = "sevenn", device: str = "cpu", fmax: float = DEFAULT_FMAX, steps: int = DEFAULT_RELAX_STEPS,
               max_atoms: int | None = None, energy_floor: Sequence[float] | None = None,
               progress: bool = False) -> list[RelaxOutcome]:
    """Relax ``atoms`` with a fresh :class:`BatchedRelaxer` (one call, one model)."""
    return BatchedRelaxer(mlff, device, fmax, steps, max_atoms).relax(atoms, energy_floor, progress)


