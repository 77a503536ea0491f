"""Shared test helpers: the toy node package (`toys`), its plugin module for CLI runs
(`toy_plugin`) and the CLI runner behind the root `cli` fixture (`cli`).

`tests/` is on `sys.path` through `[tool.pytest.ini_options] pythonpath` in pyproject.toml,
so tests import `helpers.toys`, and subprocesses get the same path from `helpers.cli`."""
