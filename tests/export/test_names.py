"""Identifier sanitising for USD prim names, MaterialX names and texture file names."""
from __future__ import annotations

import MaterialX as mx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pxr import Sdf

from nodes.export.names import identifiers, is_identifier, to_identifier


@pytest.mark.parametrize(("name", "ident"), [
    ("sofa", "sofa"), ("my sofa", "my_sofa"), ("my  - sofa", "my_sofa"), ("2 seat", "_2_seat"),
    ("café", "cafe"), ("椅子", "u6905u5B50"), ("", "_"), ("...", "_"), ("a.b:c", "a_b_c"), ("_x", "_x"),
])
def test_to_identifier(name: str, ident: str) -> None:
    assert to_identifier(name) == ident


def test_collisions_get_the_first_free_suffix_case_insensitively() -> None:
    assert identifiers(["a b", "a-b", "a_b", "A_B", "a_b_2"]) == {
        "a b": "a_b", "a-b": "a_b_2", "a_b": "a_b_3", "A_B": "A_B_4", "a_b_2": "a_b_2_2"}


@given(st.lists(st.text(max_size=12), max_size=8))
def test_identifiers_are_valid_unique_and_deterministic(names: list[str]) -> None:
    mapping = identifiers(names)
    assert mapping == identifiers(names)
    assert len({v.casefold() for v in mapping.values()}) == len(mapping) == len(set(names))
    for ident in mapping.values():
        assert is_identifier(ident) and Sdf.Path.IsValidIdentifier(ident) and mx.isValidName(ident)
