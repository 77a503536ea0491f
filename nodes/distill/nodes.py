"""Nodes of this stage family (filled in by its owner)."""
