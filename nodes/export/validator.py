"""Run the Khronos glTF validator (npm `gltf-validator`) on an exported file.

The validator is a Node.js package pinned in `tools/gltf-validator/`; install
it once with `npm ci --prefix tools/gltf-validator`.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from graphflow import UserError

VALIDATOR_DIR = Path(__file__).resolve().parents[2] / "tools" / "gltf-validator"
INSTALL_HINT = "install it with `npm ci --prefix tools/gltf-validator` (needs Node.js >= 18)"


def validator_available() -> bool:
    """True when node and the validator package are installed."""
    return shutil.which("node") is not None and (VALIDATOR_DIR / "node_modules" / "gltf-validator").is_dir()


def validate_glb(path_or_bytes: str | Path | bytes, timeout_s: float = 120.0) -> dict[str, Any]:
    """The validator's JSON report for a .glb/.gltf file or its bytes.

    `report["issues"]["numErrors"]` / `["numWarnings"]` are what tests check.
    """
    node = shutil.which("node")
    if node is None:
        raise UserError("Node.js (`node`) is not on PATH; the glTF validator needs it", hint=INSTALL_HINT)
    if not (VALIDATOR_DIR / "node_modules" / "gltf-validator").is_dir():
        raise UserError(f"the glTF validator is not installed in {VALIDATOR_DIR}", hint=INSTALL_HINT)
    with tempfile.TemporaryDirectory(prefix="graphflow-validate-") as tmp:
        if isinstance(path_or_bytes, (bytes, bytearray)):
            target = Path(tmp) / "asset.glb"
            target.write_bytes(bytes(path_or_bytes))
        else:
            target = Path(path_or_bytes).resolve()
            if not target.is_file():
                raise UserError("no such file to validate", file=str(target))
        proc = subprocess.run(
            [node, str(VALIDATOR_DIR / "validate.mjs"), str(target)],
            capture_output=True, text=True, timeout=timeout_s, cwd=VALIDATOR_DIR,
        )
    if proc.returncode != 0:
        raise RuntimeError(f"gltf-validator failed (exit {proc.returncode}): {proc.stderr.strip()}")
    return json.loads(proc.stdout)


def issue_summary(report: dict[str, Any]) -> str:
    """A short text of the report's errors and warnings, for assertion messages."""
    issues = report.get("issues", {})
    lines = [f"{issues.get('numErrors')} errors, {issues.get('numWarnings')} warnings"]
    for msg in issues.get("messages", []):
        if msg.get("severity", 9) <= 1:
            lines.append(f"  [{msg.get('severity')}] {msg.get('code')} {msg.get('pointer', '')}: {msg.get('message')}")
    return "\n".join(lines)
