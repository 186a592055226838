"""Records, stores, sources (built-in GPAW dataset, Materials Project), split and standardiser."""
