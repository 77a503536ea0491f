"""World-scale texturing: UV charts with their surface frames, swatches, and `texture.project`."""
