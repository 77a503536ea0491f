"""The node layer's layout: its packages stand on named floors and import only downwards.

A unit is a package of `nodes/` (`nodes.render`) or a module at its top (`nodes.priors`). A unit
imports units on its own floor or below, never above; units on one floor may import each other,
but no import cycle joins two units. A new package fails these tests until it is given a floor.
Imports sit at the top of a module: one inside a function body hides an arrow from a reader (and
from these tests' readers), so it is allowed only to load an optional heavy dependency.
"""
from __future__ import annotations

from pathlib import Path

import networkx as nx

from helpers.imports import cycles, function_imports, import_graph

NODES = Path(__file__).resolve().parents[2] / "nodes"

# Bottom first. `types` (the values that flow between nodes), `components` (contracts and registries
# shared across packages) and `parallel` (thread chunks) import no other unit.
FLOORS: list[set[str]] = [
    {"types", "components", "parallel"},
    {"scene"},
    {"render"},
    {"texture"},
    {"measures"},  # image measures (seams, colour, structure) the stages score with
    {"sd", "distill"},  # the learned priors and the distillation stages that use priors by name
    {"brdf"},
    {"swatch"},  # fits materials to photo swatches with brdf's models
    {"export"},
    {"report"},
    {"quality"},  # acceptance: runs whole chains of nodes and judges them
    {"batch"},
    {"priors", "catalog"},  # every built-in implementation and node module: the composition root
]

# Optional heavy or native dependencies a module may import inside a function, so that importing the
# module (and `graphflow nodes`) works without them: the `sd` extra, Ray, USD, MaterialX, and the
# native backends with a fallback (embreex -> torch rasterizer, DracoPy -> a clear error, nvdiffrast).
LAZY_ALLOWED = {"diffusers", "transformers", "peft", "huggingface_hub", "accelerate", "ray", "pxr", "MaterialX",
                "embreex", "DracoPy", "nvdiffrast", "plenoptic"}

# Arrows that still run up, each in a module another change is moving; empty this when it lands.
KNOWN_UPWARD: set[tuple[str, str]] = set()
# Modules whose function-level imports another change is moving to the top; empty this when it lands.
KNOWN_LAZY: set[str] = set()


def unit_of(module: str) -> str:
    """`nodes.render.views` -> `render`; `nodes.priors` -> `priors`; the package `nodes` -> `nodes`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def floor_of(unit: str) -> int:
    return next(i for i, floor in enumerate(FLOORS) if unit in floor)


def unit_graph(modules: nx.DiGraph) -> nx.DiGraph:
    """Units and the imports between them (an edge per pair, whatever module makes it)."""
    units = nx.DiGraph()
    units.add_nodes_from(unit_of(m) for m in modules if m != "nodes")
    units.add_edges_from((unit_of(a), unit_of(b)) for a, b in modules.edges
                         if unit_of(a) != unit_of(b) and "nodes" not in (a, b))
    return units


def test_every_unit_of_nodes_has_one_floor() -> None:
    units = set(unit_graph(import_graph(NODES, "nodes")))
    placed = [u for floor in FLOORS for u in floor]
    assert len(placed) == len(set(placed)), "a unit is on two floors"
    assert sorted(units - set(placed)) == [], "give each new package of nodes/ a floor in FLOORS"


def test_no_import_runs_up_a_floor() -> None:
    modules = import_graph(NODES, "nodes")
    upward = sorted((a, b) for a, b in modules.edges if "nodes" not in (a, b)
                    and floor_of(unit_of(b)) > floor_of(unit_of(a)) and (a, b) not in KNOWN_UPWARD)
    assert upward == [], "move the imported code down, or the importing code up, a floor"


def test_no_import_cycles_between_units_or_modules() -> None:
    modules = import_graph(NODES, "nodes")
    modules.remove_edges_from(KNOWN_UPWARD)
    assert cycles(unit_graph(modules)) == []
    assert cycles(modules) == []


def test_imports_inside_functions_only_load_optional_heavy_dependencies() -> None:
    hidden = [(module, imported, line) for module, imported, line in function_imports(NODES, "nodes")
              if imported.split(".")[0] not in LAZY_ALLOWED and module not in KNOWN_LAZY]
    assert hidden == [], "import these at the top of the module (a cycle it makes is a layering bug to fix)"


def test_the_floors_are_checked_against_a_real_arrow() -> None:
    # The checks above would pass on an empty graph: make sure they see known arrows of the code.
    units = unit_graph(import_graph(NODES, "nodes"))
    assert units.has_edge("export", "render") and units.has_edge("catalog", "export")
    assert floor_of("export") > floor_of("render") and floor_of("catalog") == len(FLOORS) - 1


def test_the_known_exceptions_are_still_needed() -> None:
    # Each entry of KNOWN_UPWARD / KNOWN_LAZY names code that is moving; once it has moved, drop the entry.
    modules = import_graph(NODES, "nodes")
    assert sorted(edge for edge in KNOWN_UPWARD if not modules.has_edge(*edge)) == []
    lazy = {module for module, imported, _ in function_imports(NODES, "nodes")
            if imported.split(".")[0] not in LAZY_ALLOWED}
    assert sorted(KNOWN_LAZY - lazy) == []
