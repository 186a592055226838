"""Batched relaxation (torch-sim FIRE + Fréchet cell filter) against the ASE reference, and its
drop / memory / bad-input rules, on a Lennard-Jones model (fast, exact) and on SevenNet."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json

import numpy as np
import pytest
import torch

pytest.importorskip("torch_sim")

from ase.build import bulk  # noqa: E402

from dosmatgen.errors import ConfigError  # noqa: E402
from dosmatgen.evaluate import batched_relax as B  # noqa: E402

LJ = pytest.importorskip("torch_sim.models.lennard_jones").LennardJonesModel


def lj(cls=LJ):
    return cls(sigma=2.3, epsilon=0.05, cutoff=6.0, dtype=torch.float64, compute_stress=True)


def crystals():
    """Copper-like cells of 1, 2, 4 and 8 atoms, strained so that FIRE has work to do."""
    out = [bulk("Cu", "fcc", a=3.9), bulk("Cu", "bcc", a=3.0, cubic=True), bulk("Cu", "fcc", a=3.7, cubic=True),
           bulk("Cu", "fcc", a=3.8, cubic=True) * (2, 1, 1)]
    for k, a in enumerate(out):
        a.rattle(0.03, seed=k)
    return out


def relax(atoms, model=None, **kw):
    kw.setdefault("steps", 60)
    return B.BatchedRelaxer(model=model or lj(), **kw).relax(atoms)


def test_lj_batched_equals_one_by_one_and_keeps_order():
    atoms = crystals()
    together = relax(atoms)
    alone = [relax([a])[0] for a in atoms]
    assert [len(o.atoms) for o in together] == [1, 2, 4, 8]  # input order
    for t, a in zip(together, alone):
        assert t.status == a.status and t.steps == a.steps
        assert t.energy == pytest.approx(a.energy, abs=1e-9)
        assert t.initial_energy > t.energy  # FIRE lowered the energy
    assert any(o.converged for o in together)


def test_budget_smaller_than_a_crystal_and_oom_halving_give_the_same_result():
    class SmallMemory(LJ):
        def forward(self, state):
            if state.n_atoms > 6:
                raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
            return super().forward(state)

    atoms = crystals()[:3]  # 1 + 2 + 4 atoms: all together need 7 > 6
    reference = relax(atoms, max_atoms=100)
    r = B.BatchedRelaxer(model=lj(SmallMemory), steps=60, max_atoms=100)
    outs = r.relax(atoms)
    assert r.oom_halvings >= 1 and r.max_atoms < 100
    for o, ref in zip(outs, reference):
        assert o.status == ref.status and o.energy == pytest.approx(ref.energy, abs=1e-9)
    # a crystal larger than the budget runs alone instead of waiting forever
    big = relax(crystals()[3:], max_atoms=2)
    assert big[0].status in ("converged", "max_steps")


def test_an_oom_while_initialising_puts_every_crystal_taken_back_in_the_queue(monkeypatch):
    """A crystal sent back with its state by an earlier out-of-memory step, taken together with new
    ones whose initialisation runs out of memory, waits in the queue again (it used to be lost)."""
    atoms = crystals()
    r = B.BatchedRelaxer(model=lj(), steps=60, max_atoms=100)
    run = B._Run(atoms, None, None, None, queue=[B._Slot(i) for i in range(4)], out=[None] * 4)
    run.queue[0].state = r._init([run.queue[0]], atoms)

    def oom(*_):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(r, "_init", oom)
    assert r._refill(run) is False and r.oom_halvings == 1
    assert [s.index for s in run.queue] == [0, 1, 2, 3] and run.queue[0].state is not None and not run.active


def test_a_crystal_the_force_field_refuses_is_dropped_and_the_rest_finish():
    class Faulty(LJ):
        def forward(self, state):
            if bool((state.atomic_numbers == 79).any()):
                raise RuntimeError("refused (simulated)")
            return super().forward(state)

    atoms = crystals()
    atoms[1].numbers[:] = 79
    r = B.BatchedRelaxer(model=lj(Faulty), steps=60)
    outs = r.relax(atoms)
    assert outs[1].status == "dropped:error:RuntimeError" and np.isnan(outs[1].energy)
    reference = relax([atoms[0], atoms[2], atoms[3]])
    for o, ref in zip([outs[0], outs[2], outs[3]], reference):
        assert o.status == ref.status and o.energy == pytest.approx(ref.energy, abs=1e-9)
    assert r.drops == {"error:RuntimeError": 1}


def test_energy_floor_and_overlap_drops_are_counted_not_fatal():
    atoms = crystals()
    squeezed = bulk("Cu", "fcc", a=2.2)  # atoms 1.56 Å apart: deep in the LJ wall, blows up
    floor = np.full(5, -1e9)
    floor[0] = 0.0  # every energy here is negative: crystal 0 must be dropped at once
    r = B.BatchedRelaxer(model=lj(), steps=60)
    outs = r.relax(atoms + [squeezed], energy_floor=floor)
    assert outs[0].status == "dropped:below_energy_floor" and outs[0].steps == 0
    assert outs[4].dropped and outs[4].status in ("dropped:volume_blowup", "dropped:non_finite")
    assert all(not o.dropped for o in outs[1:4])
    assert sum(r.drops.values()) == 2
    # negative control: without the floor crystal 0 relaxes normally
    assert not relax(atoms[:1])[0].dropped


def test_bad_input_is_one_config_error(monkeypatch):
    with pytest.raises(ConfigError, match="no batched"):
        B.load_batched_model("chgnet")
    with pytest.raises(ConfigError, match="no batched"):
        B.load_batched_model("not-a-force-field")
    if importlib.util.find_spec("orb_models") is None:  # an MLFF whose package is not installed
        with pytest.raises(ConfigError, match="orb-models"):
            B.load_batched_model("orb")
    with pytest.raises(ConfigError, match="does not exist"):
        B.load_batched_model("sevenn", weights="/nonexistent/model.pth")
    with pytest.raises(ConfigError, match="fmax"):
        B.BatchedRelaxer(model=lj(), fmax=float("nan"))
    with pytest.raises(ConfigError, match="max_atoms"):
        B.BatchedRelaxer(model=lj(), max_atoms=0)
    with pytest.raises(ConfigError, match="energy_floor"):
        B.BatchedRelaxer(model=lj()).relax(crystals(), energy_floor=[0.0])
    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version",
                        lambda name: "0.4.1" if name == "torch-sim-atomistic" else real(name))
    with pytest.raises(ConfigError, match="0.4.1"):
        B.BatchedRelaxer(model=lj())


def test_formation_rows_from_the_batched_path(tmp_path):
    """Invalid structures are skipped with a reason, the rest relaxed together; E_f uses the refs."""
    from dosmatgen.evaluate.formation import FormationItem, compute_formation_energies

    good = crystals()[:2]
    items = [FormationItem(f"g{k}", f"s{k}", a.numbers, a.get_scaled_positions(), np.asarray(a.cell))
             for k, a in enumerate(good)]
    items.append(FormationItem("overlap", "s", np.array([29, 29]), np.array([[0, 0, 0], [0.01, 0, 0]]),
                               np.eye(3) * 4.0))
    items.append(FormationItem("flat", "s", np.array([29]), np.zeros((1, 3)), np.diag([4.0, 4.0, 0.0])))
    refs = tmp_path / "refs.json"
    refs.write_text(json.dumps({"format": "dosmatgen-elemental-refs", "version": 1, "mlff": "sevenn",
                                "elements": {"Cu": {"energy_per_atom": -0.2, "source": "mlff:test"}}}))
    res = compute_formation_energies(items, tmp_path / "f.json", relaxer="batched", refs_cache=refs,
                                     batched=B.BatchedRelaxer(model=lj(), steps=40), progress=False)
    rows = {r["id"]: r for r in res["rows"]}
    assert rows["overlap"]["status"] == "skipped_invalid:overlapping_atoms"
    assert rows["flat"]["status"] == "skipped_invalid:degenerate_lattice"
    alone = relax(good, steps=40)
    for k in range(2):
        r = rows[f"g{k}"]
        assert r["status"] == "ok" and r["relax_status"] == alone[k].status
        assert r["ef_relaxed"] == pytest.approx((alone[k].energy + 0.2 * len(good[k])) / len(good[k]), abs=1e-9)
    assert res["relaxer"] == "batched"
    with pytest.raises(ConfigError, match="relaxer"):
        compute_formation_energies(items, tmp_path / "g.json", relaxer="fast", refs_cache=refs)
    assert not (tmp_path / "g.json.parts").exists()


def test_sevenn_batched_matches_the_ase_reference():
    """Same crystals, same FIRE settings: total energy per atom within 2 meV and volume within 1 %."""
    pytest.importorskip("sevenn")
    from dosmatgen.evaluate.mlff import get_calculator, relax as ase_relax

    torch.set_num_threads(1)
    atoms = [bulk("Si", "diamond", a=5.6), bulk("NaCl", "rocksalt", a=5.8)]
    for k, a in enumerate(atoms):
        a.rattle(0.03, seed=k)
    outs = B.relax_many(atoms, "sevenn", steps=15)
    calc = get_calculator("sevenn")
    for a, o in zip(atoms, outs):
        ref, e, _ = ase_relax(a, calc, 0.05, 15)
        assert o.energy / len(a) == pytest.approx(e / len(a), abs=2e-3)
        assert o.atoms.get_volume() == pytest.approx(ref.get_volume(), rel=1e-2)


def test_no_bool_scatter_which_cuda_lacks(monkeypatch):
    """A lent H200 raised in ``_check``: CUDA has no ``scatter_reduce`` kernel for ``bool``. CPU
    has one, so the CPU here is made to refuse it as CUDA does; the relaxation must not need it."""
    real = torch.Tensor.scatter_reduce

    def cuda_like(self, *args, **kwargs):
        if self.dtype == torch.bool:
            raise NotImplementedError('"cuda_scatter_gather_base_kernel_func" not implemented for \'Bool\'')
        return real(self, *args, **kwargs)

    with pytest.raises(NotImplementedError):  # negative control: the guard does bite on bool
        cuda_like(torch.zeros(2, dtype=torch.bool), 0, torch.tensor([0, 1]), torch.ones(2, dtype=torch.bool), "amax")
    monkeypatch.setattr(torch.Tensor, "scatter_reduce", cuda_like)
    outcomes = relax(crystals(), steps=5)
    assert all(np.isfinite(o.energy) for o in outcomes)
