"""Crystal prototypes and chemically sensible element substitutions for the built-in dataset
(docs/data.md).

Each :class:`Prototype` builds a primitive cell (2-8 atoms) from an ordered tuple of elements,
one per Wyckoff role, with a lattice constant from a simple radius rule (sum of ASE covalent
radii for the nearest-neighbour pair; the MLFF relaxation does the rest).  ``ionic`` prototypes
take cations with one of their common oxidation states and anions with their usual negative
state such that the formula is charge neutral; ``metallic`` prototypes take metals.
Only elements with a GPAW setup (:data:`dosmatgen.dos.gpaw_engine.GPAW_ELEMENTS`) are used.

>>> p = PROTOTYPES["L12"]
>>> rec = p.build(("Ni", "Au"))
>>> rec.to_structure().composition.almost_equals(__import__('pymatgen.core').core.Composition('Au3Ni')), rec.num_atoms, int(rec.atomic_numbers[0])
(True, 4, 28)
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from dosmatgen.data.schema import CrystalRecord
from dosmatgen.dos.gpaw_engine import GPAW_ELEMENTS, MAGNETIC_ELEMENTS

#: Anions and the (negative) oxidation state they take here.
ANIONS: dict[str, int] = {"O": -2, "S": -2, "Se": -2, "Te": -2, "F": -1, "Cl": -1, "Br": -1, "I": -1,
                          "N": -3, "P": -3, "As": -3, "Sb": -3}
HALIDES = ("F", "Cl", "Br", "I")
CHALCOGENS = ("O", "S", "Se", "Te")
#: Metals allowed in intermetallic prototypes.
METALS: tuple[str, ...] = (
    "Li", "Na", "K", "Be", "Mg", "Ca", "Sr", "Ba", "Sc", "Y", "Ti", "Zr", "Hf", "V", "Nb", "Ta", "Cr", "Mo", "W",
    "Mn", "Re", "Fe", "Ru", "Os", "Co", "Rh", "Ir", "Ni", "Pd", "Pt", "Cu", "Ag", "Au", "Zn", "Cd", "Hg",
    "Al", "Ga", "In", "Tl", "Sn", "Pb")
TRANSITION_METALS: tuple[str, ...] = (
    "Sc", "Y", "Ti", "Zr", "Hf", "V", "Nb", "Ta", "Cr", "Mo", "W", "Mn", "Re", "Fe", "Ru", "Os", "Co", "Rh",
    "Ir", "Ni", "Pd", "Pt", "Cu", "Ag", "Au", "Zn", "Cd")
LATE_TM = ("Mn", "Fe", "Co", "Ni", "Cu", "Ru", "Rh", "Pd", "Ag", "Ir", "Pt", "Au")
EARLY_TM = ("Sc", "Y", "Ti", "Zr", "Hf", "V", "Nb", "Ta", "Cr", "Mo", "W", "Mn", "Fe")
P_BLOCK_Z = ("Al", "Ga", "In", "Si", "Ge", "Sn", "Pb", "Sb", "Bi", "As", "P")
#: Large A-site cations for perovskites.
A_SITE = ("Na", "K", "Rb", "Cs", "Ca", "Sr", "Ba", "Pb", "Tl", "Ag", "Cd", "Y", "Sc")


def cation_states(symbol: str) -> tuple[int, ...]:
    """Positive common oxidation states of ``symbol`` (pymatgen)."""
    from pymatgen.core import Element

    return tuple(s for s in Element(symbol).common_oxidation_states if s > 0)


def cations() -> list[str]:
    """Every metal or metalloid with a GPAW setup and a positive common oxidation state."""
    from pymatgen.core import Element

    return [sym for sym in sorted(GPAW_ELEMENTS, key=lambda s: Element(s).Z)
            if (Element(sym).is_metal or Element(sym).is_metalloid) and cation_states(sym)]


def electronegativity(symbol: str) -> float:
    from pymatgen.core import Element

    x = Element(symbol).X
    return float(x) if x == x else 0.0


def radius(symbol: str) -> float:
    """Covalent radius (Å, ASE table) used by the lattice-constant rule."""
    from ase.data import atomic_numbers, covalent_radii

    return float(covalent_radii[atomic_numbers[symbol]])


@dataclass(frozen=True)
class Prototype:
    """A crystal structure type.

    Attributes:
        name: short id used in structure ids (``rocksalt``, ``L12`` ...).
        kind: ``ionic`` or ``metallic``.
        roles: Wyckoff roles in the order elements are given.
        counts: atoms per primitive cell for each role.
        cell: ``cell(d, counts)`` -> (lattice rows, role index per site, frac coords), where ``d`` is
            the nearest-neighbour distance (Å) from the radius rule.
        nn_pair: which two roles form the nearest-neighbour pair of the radius rule.
    """

    name: str
    kind: str
    roles: tuple[str, ...]
    counts: tuple[int, ...]
    cell: Callable[[float], tuple[np.ndarray, list[int], np.ndarray]]
    nn_pair: tuple[int, int] = (0, 1)

    @property
    def num_atoms(self) -> int:
        return int(sum(self.counts))

    def nn_distance(self, elements: tuple[str, ...]) -> float:
        i, j = self.nn_pair
        d = radius(elements[i]) + radius(elements[j])
        return d * (1.05 if self.kind == "metallic" else 1.0)

    def build(self, elements: tuple[str, ...], structure_id: str | None = None) -> CrystalRecord:
        """The primitive cell with ``elements`` on the roles (first role's atoms first)."""
        from ase.data import atomic_numbers

        if len(elements) != len(self.roles):
            raise ValueError(f"prototype {self.name} needs {len(self.roles)} elements {self.roles}, got {elements}")
        lattice, role_of_site, frac = self.cell(self.nn_distance(elements))
        order = np.argsort(np.asarray(role_of_site), kind="stable")
        zs = np.array([atomic_numbers[elements[role_of_site[i]]] for i in order])
        sid = structure_id or structure_id_for(self, elements)
        return CrystalRecord(sid, zs, np.asarray(frac)[order], lattice, None,
                             {"source": "builtin", "prototype": self.name, "elements": list(elements)})


def structure_id_for(proto: Prototype, elements: tuple[str, ...]) -> str:
    return f"builtin-{proto.name}-" + "-".join(elements)


def _fcc_prim(a: float) -> np.ndarray:
    return 0.5 * a * np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])


def _hex(a: float, c: float) -> np.ndarray:
    return np.array([[a, 0.0, 0.0], [-0.5 * a, 0.5 * math.sqrt(3.0) * a, 0.0], [0.0, 0.0, c]])


def _rocksalt(d: float):
    return _fcc_prim(2 * d), [0, 1], np.array([[0, 0, 0], [0.5, 0.5, 0.5]])


def _cscl(d: float):
    a = 2 * d / math.sqrt(3.0)
    return np.eye(3) * a, [0, 1], np.array([[0, 0, 0], [0.5, 0.5, 0.5]])


def _zincblende(d: float):
    return _fcc_prim(4 * d / math.sqrt(3.0)), [0, 1], np.array([[0, 0, 0], [0.25, 0.25, 0.25]])


def _wurtzite(d: float):
    a = d * math.sqrt(8.0 / 3.0)
    c = a * math.sqrt(8.0 / 3.0)
    u = 3.0 / 8.0
    frac = [[1 / 3, 2 / 3, 0], [2 / 3, 1 / 3, 0.5], [1 / 3, 2 / 3, u], [2 / 3, 1 / 3, 0.5 + u]]
    return _hex(a, c), [0, 0, 1, 1], np.array(frac)


def _fluorite(d: float):  # role 0 on 0, role 1 on +-1/4
    return _fcc_prim(4 * d / math.sqrt(3.0)), [0, 1, 1], np.array([[0, 0, 0], [0.25] * 3, [0.75] * 3])


def _antifluorite(d: float):  # role 0 (cation, 2 atoms) on +-1/4, role 1 (anion) on 0
    return _fcc_prim(4 * d / math.sqrt(3.0)), [0, 0, 1], np.array([[0.25] * 3, [0.75] * 3, [0, 0, 0]])


def _rutile(d: float):
    u = 0.305
    a = d / (u * math.sqrt(2.0))
    c = 0.645 * a
    frac = [[0, 0, 0], [0.5, 0.5, 0.5], [u, u, 0], [1 - u, 1 - u, 0], [0.5 + u, 0.5 - u, 0.5],
            [0.5 - u, 0.5 + u, 0.5]]
    return np.diag([a, a, c]), [0, 0, 1, 1, 1, 1], np.array(frac)


def _perovskite(d: float):  # roles A, B, X; d = B-X distance
    a = 2 * d
    frac = [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
    return np.eye(3) * a, [0, 1, 2, 2, 2], np.array(frac)


def _reo3(d: float):  # roles B, X
    a = 2 * d
    frac = [[0, 0, 0], [0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5]]
    return np.eye(3) * a, [0, 1, 1, 1], np.array(frac)


def _l12(d: float):  # roles minority B (corner), majority A (faces)
    a = d * math.sqrt(2.0)
    frac = [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
    return np.eye(3) * a, [0, 1, 1, 1], np.array(frac)


def _l10(d: float):  # primitive tetragonal cell of CuAu-type, c/a(conv) = 1
    a = d  # in-plane primitive = a_conv / sqrt 2 = nearest-neighbour distance
    c = d * math.sqrt(2.0)
    return np.diag([a, a, c]), [0, 1], np.array([[0, 0, 0], [0.5, 0.5, 0.5]])


def _half_heusler(d: float):  # roles X (0), Y (1/2), Z (1/4); d = X-Z distance
    a = 4 * d / math.sqrt(3.0)
    return _fcc_prim(a), [0, 1, 2], np.array([[0, 0, 0], [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]])


def _full_heusler(d: float):  # roles X (2 atoms, +-1/4), Y (0), Z (1/2); d = X-Y distance
    a = 4 * d / math.sqrt(3.0)
    frac = [[0.25] * 3, [0.75] * 3, [0, 0, 0], [0.5, 0.5, 0.5]]
    return _fcc_prim(a), [0, 0, 1, 2], np.array(frac)


def _nias(d: float):  # roles A (0, 0, 0/½), X (⅓ ⅔ ¼); c/a = 1.39
    ratio = 1.39
    a = d / math.sqrt(1.0 / 3.0 + ratio ** 2 / 16.0)
    frac = [[0, 0, 0], [0, 0, 0.5], [1 / 3, 2 / 3, 0.25], [2 / 3, 1 / 3, 0.75]]
    return _hex(a, ratio * a), [0, 0, 1, 1], np.array(frac)


def _cdi2(d: float):  # roles A (0), X (⅓ ⅔ z); c/a = 1.6, z = 0.25
    ratio, z = 1.6, 0.25
    a = d / math.sqrt(1.0 / 3.0 + (ratio * z) ** 2)
    frac = [[0, 0, 0], [1 / 3, 2 / 3, z], [2 / 3, 1 / 3, 1 - z]]
    return _hex(a, ratio * a), [0, 1, 1], np.array(frac)


PROTOTYPES: dict[str, Prototype] = {p.name: p for p in [
    Prototype("rocksalt", "ionic", ("A", "X"), (1, 1), _rocksalt),
    Prototype("CsCl", "ionic", ("A", "X"), (1, 1), _cscl),
    Prototype("B2", "metallic", ("A", "B"), (1, 1), _cscl),
    Prototype("zincblende", "ionic", ("A", "X"), (1, 1), _zincblende),
    Prototype("wurtzite", "ionic", ("A", "X"), (2, 2), _wurtzite),
    Prototype("fluorite", "ionic", ("A", "X"), (1, 2), _fluorite),
    Prototype("antifluorite", "ionic", ("A", "X"), (2, 1), _antifluorite),
    Prototype("rutile", "ionic", ("A", "X"), (2, 4), _rutile),
    Prototype("perovskite", "ionic", ("A", "B", "X"), (1, 1, 3), _perovskite, nn_pair=(1, 2)),
    Prototype("ReO3", "ionic", ("B", "X"), (1, 3), _reo3),
    Prototype("NiAs", "ionic", ("A", "X"), (2, 2), _nias),
    Prototype("CdI2", "ionic", ("A", "X"), (1, 2), _cdi2),
    Prototype("L12", "metallic", ("B", "A"), (1, 3), _l12),
    Prototype("L10", "metallic", ("A", "B"), (1, 1), _l10),
    Prototype("halfHeusler", "metallic", ("X", "Y", "Z"), (1, 1, 1), _half_heusler, nn_pair=(0, 2)),
    Prototype("Heusler", "metallic", ("X", "Y", "Z"), (2, 1, 1), _full_heusler, nn_pair=(0, 1)),
]}


def _neutral_binary(cation_count: int, anion_count: int, anion_pool: tuple[str, ...],
                    extra: Callable[[str, int, str], bool] | None = None) -> list[tuple[str, str]]:
    out = []
    for a in cations():
        for x in anion_pool:
            if a == x or x not in GPAW_ELEMENTS or electronegativity(a) >= electronegativity(x):
                continue
            q = -ANIONS[x] * anion_count
            for s in cation_states(a):
                if s * cation_count == q and (extra is None or extra(a, s, x)):
                    out.append((a, x))
                    break
    return out


def substitutions(proto: Prototype) -> list[tuple[str, ...]]:
    """All chemically sensible element tuples for ``proto`` (deterministic order)."""
    n = proto.name
    alkali = ("Li", "Na", "K", "Rb", "Cs")
    if n == "rocksalt":
        return _neutral_binary(1, 1, CHALCOGENS + HALIDES + ("N", "P", "As", "Sb"))
    if n == "CsCl":
        return [(a, x) for a in ("Cs", "Rb", "K", "Tl") for x in ("Cl", "Br", "I")]
    if n in ("zincblende", "wurtzite"):
        return _neutral_binary(1, 1, ("O", "S", "Se", "Te", "N", "P", "As", "Sb", "F", "Cl", "Br", "I"),
                               extra=lambda a, s, x: a not in alkali and a not in ("Ba", "Sr", "Ca", "Rb"))
    if n == "fluorite":
        return _neutral_binary(1, 2, ("O", "S", "F", "Cl"), extra=lambda a, s, x: a not in alkali)
    if n == "antifluorite":
        return _neutral_binary(2, 1, ("O", "S", "Se", "Te"), extra=lambda a, s, x: s == 1)
    if n == "rutile":
        return _neutral_binary(1, 2, ("O", "F"), extra=lambda a, s, x: a not in alkali and a not in A_SITE[:7])
    if n == "CdI2":
        return _neutral_binary(1, 2, ("S", "Se", "Te", "Cl", "Br", "I"),
                               extra=lambda a, s, x: a not in alkali)
    if n == "NiAs":
        return _neutral_binary(1, 1, ("S", "Se", "Te", "P", "As", "Sb"),
                               extra=lambda a, s, x: a in TRANSITION_METALS or a in ("Sn", "Pb", "Ge"))
    if n == "ReO3":
        return _neutral_binary(1, 3, ("O", "F"), extra=lambda a, s, x: a not in alkali and a not in A_SITE[:7])
    if n == "perovskite":
        out = []
        for x in ("O", "F", "Cl", "Br", "I"):
            need = -ANIONS[x] * 3
            for a in A_SITE:
                if a not in GPAW_ELEMENTS:
                    continue
                for b in cations():
                    if b == a or b in alkali or electronegativity(b) >= electronegativity(x) or b in ("As", "Sb", "Te", "B"):
                        continue
                    if radius(b) >= radius(a):
                        continue
                    if any(sa + sb == need for sa in cation_states(a) for sb in cation_states(b)):
                        out.append((a, b, x))
        return out
    metals = [m for m in METALS if m in GPAW_ELEMENTS]
    if n == "B2":
        return [(a, b) for a, b in itertools.combinations(metals, 2)]
    if n == "L10":
        tm = [m for m in TRANSITION_METALS + ("Al", "Ga", "In", "Sn", "Mg") if m in GPAW_ELEMENTS]
        return [(a, b) for a, b in itertools.combinations(tm, 2)]
    if n == "L12":
        return [(b, a) for a in metals for b in metals if a != b]
    if n == "halfHeusler":
        return [(x, y, z) for x in LATE_TM for y in EARLY_TM for z in P_BLOCK_Z if x != y]
    if n == "Heusler":
        return [(x, y, z) for x in LATE_TM for y in EARLY_TM for z in P_BLOCK_Z[:7] if x != y]
    raise ValueError(f"no substitution rule for prototype {n}")


def is_magnetic(elements: tuple[str, ...]) -> bool:
    """True when the DFT run will be spin-polarised (Cr, Mn, Fe, Co or Ni present)."""
    return bool(set(elements) & MAGNETIC_ELEMENTS)


#: The paper's two targets (docs/data.md): always built first.
TARGETS: tuple[tuple[str, tuple[str, ...]], ...] = (("L12", ("Ni", "Au")), ("rutile", ("Ir", "O")))
