"""Deterministic, unique identifiers for instance names in USD and MaterialX.

Instance names come from the user's scene (glTF node names, references files) and can hold
spaces, dots, leading digits or any unicode; USD prim names and MaterialX element names cannot.
Both exports use the common strict subset `[A-Za-z_][A-Za-z0-9_]*` so one identifier serves
prim paths, MaterialX names and texture file names alike (ASCII: older USD runtimes, AR Quick
Look and zip tools on every platform read it). The glTF keeps the original names; the mapping
goes into the export's summary and from there into report.json.

Rules, applied in instance order: accents are dropped (NFKD: "café" -> "cafe"); any other
non-ASCII character becomes `u<HEX>` ("椅子" -> "u6905u5B50"); runs of other characters become
one "_"; a leading digit gets a "_" prefix; an empty result is "_". A name already taken
(compared case-insensitively, so "Sofa" and "sofa" never share a texture file on macOS or
Windows) gets the first free suffix "_2", "_3", ...
"""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def is_identifier(name: str) -> bool:
    """True when `name` is usable as is as a USD prim name, a MaterialX name and a file stem."""
    return bool(_IDENTIFIER.match(name))


def to_identifier(name: str) -> str:
    """The identifier for one name, before uniqueness is applied."""
    out: list[str] = []
    for char in unicodedata.normalize("NFKD", name):
        if unicodedata.combining(char):
            continue
        if char.isascii() and (char.isalnum() or char == "_"):
            out.append(char)
        elif not char.isascii() and unicodedata.category(char)[0] in "LN":
            out.append(f"u{ord(char):04X}")
        elif not out or out[-1] != "_":
            out.append("_")
    text = "".join(out) or "_"
    return f"_{text}" if text[0].isdigit() else text


def identifiers(names: Iterable[str]) -> dict[str, str]:
    """Original name -> unique identifier, in the order given (the same names give the same map)."""
    mapping: dict[str, str] = {}
    taken: set[str] = set()
    for name in names:
        if name in mapping:
            continue
        base = to_identifier(name)
        candidate, suffix = base, 1
        while candidate.casefold() in taken:
            suffix += 1
            candidate = f"{base}_{suffix}"
        taken.add(candidate.casefold())
        mapping[name] = candidate
    return mapping
