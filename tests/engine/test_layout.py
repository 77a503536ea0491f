"""The engine's layout: no import cycles between its modules, and it never imports the node layer."""
from __future__ import annotations

from pathlib import Path

from helpers.imports import cycles, import_graph, imports_of

ENGINE = Path(__file__).resolve().parents[2] / "graphflow"
KNOWN: list[list[str]] = []  # no import cycle is tolerated


def test_no_import_cycles_in_the_engine() -> None:
    found = cycles(import_graph(ENGINE, "graphflow"))
    assert [c for c in found if c not in KNOWN] == []


def test_engine_never_imports_nodes() -> None:
    assert imports_of(ENGINE, "graphflow", "nodes") == []


def test_the_scheduler_leaves_keys_yaml_and_the_cli_to_others() -> None:
    graph = import_graph(ENGINE, "graphflow")
    assert "graphflow.cli" not in graph.successors("graphflow.scheduler")
    assert "graphflow.fingerprint" not in graph.successors("graphflow.scheduler")  # keys are built in keys.py
    assert "graphflow.graph" not in graph.successors("graphflow.yamlio")
    assert not any("graphflow.cli" in graph.successors(m) for m in graph if m != "graphflow.cli")
