"""dosmatgen.model"""
