"""Structure match after an MLFF relaxation of each generated crystal (not the paper's Table 2).

The paper matches its generated crystals unrelaxed (Table 2, §3.1) and relaxes them with an MLFF
before anything else is asked of them (Orb-v2: Fig. 2's formation energies, §3.3's discovery
workflow). :class:`RelaxedStructureMatchRate` asks the question in between: does the relaxation
that the workflow applies anyway bring a generated crystal onto its target? A generated cell that is
a distorted copy of the target's (a P1 cell some degrees off, at about the right volume) sits in
the target's basin and relaxes onto it. So do some cells with no information at all: read the rate
against random cells of the right composition and volume relaxed the same way, which on the demo's
100 real test crystals relax onto 11 of them, and onto as many of the composition-matched ones as
the generated cells (results/real_crystal_training/demo375/relaxed/README.md). Small cells of simple
structures relax onto their targets from almost anywhere.

Only a crystal whose reduced formula equals its target's can match, and a relaxation keeps the
composition, so only those are relaxed; every other pair is a non-match without a relaxation. A
relaxation that blows up (:mod:`dosmatgen.evaluate.batched_relax`'s drop rules) counts as a miss.
The tolerances, the timeout and the exclusions are those of :class:`StructureMatchRate`.

Example, with ASE's toy EMT force field (copper, a sheared fcc cell)::

    >>> from pymatgen.core import Lattice, Structure
    >>> target = Structure(Lattice.cubic(3.61), ["Cu"] * 4, [[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0]])
    >>> sheared = Structure(Lattice.from_parameters(3.61, 3.61, 3.61, 90, 90, 65), target.species, target.frac_coords)
    >>> rate = RelaxedStructureMatchRate(mlff_relax("emt"), timeout_s=None)
    >>> rate.outcomes([sheared], [target])
    ['match']
    >>> StructureMatchRate(timeout_s=None).outcomes([sheared], [target])
    ['no_match']
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable, Sequence

import numpy as np
from tqdm.auto import tqdm

from dosmatgen.evaluate.metrics import DEFAULT_TIMEOUT_S, MetricResult, StructureMatchRate
from dosmatgen.evaluate.mlff import DEFAULT_FMAX, DEFAULT_RELAX_STEPS, canonical_mlff

#: A relaxation: pymatgen structures in, relaxed structures out (``None`` where it blew up), in order.
RelaxFn = Callable[[Sequence[Any]], list[Any]]


def mlff_relax(mlff: str = "sevenn", device: str = "cpu", fmax: float = DEFAULT_FMAX,
               steps: int = DEFAULT_RELAX_STEPS, progress: bool = False) -> RelaxFn:
    """The evaluation's relaxation (FIRE + Fréchet cell filter, ``fmax`` eV/Å, at most ``steps``
    steps) with force field ``mlff`` as a :data:`RelaxFn`: batched through torch-sim where the force
    field has a batched wrapper (SevenNet, Orb), else one crystal at a time with ASE. The force field
    is loaded on the first call; ``progress``: a progress bar over the crystals."""
    from pymatgen.io.ase import AseAtomsAdaptor

    name = canonical_mlff(mlff)

    def relax(structures: Sequence[Any]) -> list[Any]:
        from dosmatgen.evaluate.batched_relax import BATCHED_MLFFS, BatchedRelaxer

        atoms = [AseAtomsAdaptor.get_atoms(s) for s in structures]
        if not atoms:
            return []
        if name in BATCHED_MLFFS:
            outcomes = BatchedRelaxer(name, device, fmax, steps).relax(atoms, progress=progress)
            done = [(o.atoms, not o.dropped) for o in outcomes]
        else:
            from dosmatgen.evaluate.mlff import get_calculator, intact, relax as ase_relax

            calc = get_calculator(name, device)
            done = []
            # out of steps: the last structure, as the batched relaxer; blown up (a NaN energy when
            # the force field raised): None
            for a in tqdm(atoms, desc="relax", unit="crystal", disable=not progress):
                out, energy, _ = ase_relax(a, calc, fmax, steps)
                done.append((out, bool(np.isfinite(energy))
                             and intact(a.get_volume(), out.get_volume(), energy, out.get_forces())))
        return [AseAtomsAdaptor.get_structure(a) if ok else None for a, ok in done]

    return relax


class RelaxedStructureMatchRate(StructureMatchRate):
    """Structure match rate in percent after relaxing each composition-matched generated crystal
    with ``relax`` (a :data:`RelaxFn`, e.g. :func:`mlff_relax`); the target stays as it is."""

    name = "structure_match_rate_relaxed"

    def __init__(self, relax: RelaxFn, timeout_s: float | None = DEFAULT_TIMEOUT_S, workers: int = 1,
                 progress: bool = False) -> None:
        super().__init__(timeout_s, workers, progress)
        self.relax = relax

    def outcomes(self, generated: Sequence[Any], reference: Sequence[Any]) -> list[str]:
        """Per pair: ``"match"``, ``"no_match"``, ``"timeout"``, ``"error"``, ``"unbuildable"`` or
        ``"relax_failed"`` (the relaxation blew up: a miss)."""
        if len(generated) != len(reference):
            raise ValueError(f"RelaxedStructureMatchRate: {len(generated)} generated but {len(reference)} references")
        out = ["unbuildable" if g is None else "no_match" for g in generated]
        same = [i for i, g in enumerate(generated) if g is not None
                and g.composition.reduced_formula == reference[i].composition.reduced_formula]
        relaxed = self.relax([generated[i] for i in same])
        fitted = super().outcomes(relaxed, [reference[i] for i in same])
        for i, o in zip(same, fitted):
            out[i] = "relax_failed" if o == "unbuildable" else o
        return out

    def from_outcomes(self, outcomes: Sequence[str]) -> MetricResult:
        result = super().from_outcomes(outcomes)
        result.counts["relax_failed_counted_as_miss"] = Counter(outcomes)["relax_failed"]
        return result
