"""Rasterization and views (DESIGN.md §5).

- `ops`: nvdiffrast's `interpolate` / `texture` in PyTorch; `sample_texture_map` for glTF-uv atlases.
- `raster`: `get_rasterizer(name)` over the registered backends `embree` (CPU, default), `torch_raster`
  (reference), `nvdiffrast_backend` (CUDA, optional); the `Rasterizer` contract is `nodes.components.raster`.
- `embree`: `RayCaster` (closest hit / occlusion queries, used for AO and previews) and the embree backend.
- `cameras`: look_at / perspective / intrinsics, orbit and room-interior camera placement.
- `views`: `sample_views`, what the `views.sample` node (`nodes`) runs; `compose.render_textures`.
- `uv_raster`: texel fragments of an instance's atlas, island masks, seam dilation.
"""
