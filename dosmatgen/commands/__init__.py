"""Sub-commands of the ``dosmatgen`` CLI, one module each, each with ``register(subparsers)``."""
