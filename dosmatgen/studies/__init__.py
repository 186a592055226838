"""dosmatgen.studies"""
