"""dosmatgen: crystal generation guided by per-atom electronic density of states.

A replication of "Electronic structure guided inverse design using generative models"
(DOSMatGen, Jia, Ganesh & Fung). Importing the package has no side effects.
"""

__version__ = "0.1.0"
