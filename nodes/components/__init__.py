"""Components shared across node packages: contracts, and registries of their implementations by name.

Modules here import only `graphflow`, `nodes.types` and torch, so any node package may import them:
`priors` (score and super-resolution prior contracts, their configs and registries), `raster` (the
rasterizer contract and its registry), `registry` (the registry object itself). Implementations register
where they are defined; `nodes.priors` and `nodes.render.raster` import the built-in ones (the catalog imports
both), and a registry loads the node plugins when asked for a name it does not know yet.
"""
