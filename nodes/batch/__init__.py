"""Batch texturing: fan a per-scene pipeline out over a folder of scenes (`graphs/batch_texture.yaml`)."""
