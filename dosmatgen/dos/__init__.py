"""Site-DOS engines (GPAW DFT, Materials Project conversion) and the shared energy grid."""
