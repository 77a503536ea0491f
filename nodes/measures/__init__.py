"""Quality measures: pure functions of tensors (renders, atlases, masks, meshes), no node and no stage.

Where it sits: low, just above `nodes/render` and `nodes/texture` (it imports `nodes.parallel`, and
`tile_report` the charts of `nodes.texture` and the UV raster of `nodes.render`), so the
stages that decide with a measure may import it: distill's Scoring (keep or refuse a stage's result by
structure distance, invented colours and seam ratio), superres (detail and anchor measures), swatch.material
(colours far from the swatch's palette). The acceptance harness that runs the shipped graphs and judges
their results with these measures is `nodes/quality`, on the top floor; nothing here imports it.

- `distances`: multi-scale patch sliced-Wasserstein (`structure_distance`, its precomputed targets),
  binding accuracy, and the super-resolution detail / anchor measures;
- `statistics`: the Portilla-Simoncelli texture-statistics distance (plenoptic);
- `colour`: mean-colour ΔE76, the swatch's palette and invented colours, isolated outlier texels;
- `seams`: seam geometry: the colour step across a mesh's UV seams (`seam_ratio`) and across the tile
  boundaries of a swatch laid in `tile` mode (`tile_seams`);
- `tile_report`: `tile_seams` on any instance's atlas, resampled into the swatch's frame over its largest
  chart (report.page runs it on every texturing output, issue 25 item 2).
"""
