"""`swatch.material`: each bound reference turned into a material in the swatch's own 2D space (DESIGN §4)."""
