"""Where the package's own files are: the repository root (the folder above ``dosmatgen/``) and its
``resources/`` (the built-in dataset, the MP-20 pool, the authors' miniature release). Nothing here
points outside the checkout."""

from pathlib import Path

#: The repository root (the folder holding ``dosmatgen/``, ``config/`` and ``resources/``).
REPO_ROOT: Path = Path(__file__).resolve().parent.parent
#: Data shipped with the repository.
RESOURCES: Path = REPO_ROOT / "resources"
