"""``python -m dev_scripts.builtin`` (from the repository root): see :mod:`dev_scripts.builtin.cli`."""

import sys

from dev_scripts.builtin.cli import main

if __name__ == "__main__":  # a spawned pool worker imports this module as __mp_main__: no second run
    sys.exit(main())
