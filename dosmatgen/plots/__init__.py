"""dosmatgen.plots"""
