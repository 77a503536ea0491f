"""Shared test helpers: the toy node package (`toys`), its plugin module for CLI runs
(`toy_plugin`) and the CLI runner behind the root `cli` fixture (`cli`); small synthetic scenes with
known answers (`brdf_scenes`, `distill_scenes`, `pbr_swatches`, `photo_swatches`); the module import
graph (`imports`) and the node code lock (`node_code`) for the layout and key tests. Production code
never imports this package.

`tests/` is on `sys.path` through `[tool.pytest.ini_options] pythonpath` in pyproject.toml,
so tests import `helpers.toys`, and subprocesses get the same path from `helpers.cli`."""
