"""The energy grid every site DOS in the project lives on (docs/data.md).

>>> ENERGY_GRID.shape, float(ENERGY_GRID[0]), float(ENERGY_GRID[-1])
((400,), -10.0, 10.0)
"""

import numpy as np

N_DOS: int = 400
E_MIN: float = -10.0
E_MAX: float = 10.0
#: eV relative to the Fermi level (valence-band maximum for gapped systems).
ENERGY_GRID: np.ndarray = np.linspace(E_MIN, E_MAX, N_DOS)
