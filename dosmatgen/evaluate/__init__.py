"""dosmatgen.evaluate"""
