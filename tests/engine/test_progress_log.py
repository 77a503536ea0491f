"""Progress a person can read in a log (issue 14, item 6), through the real CLI: with stderr a pipe,
one line per finished item and a total at the end, never a carriage-return bar; on a terminal, bars."""
from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

from helpers.cli import cli_env

GRAPH = """
graph: logged
nodes:
  sp: {type: toy.split, params: {values: {a: 1.0, b: 2.0, c: 3.0, d: 4.0}}}
  st: {type: toy.steps, params: {steps: 200, warn: %s}, inputs: {xs: sp}}
  t: {type: toy.total, inputs: {xs: st}}
outputs: {total: t}
"""
ITEM_LINE = re.compile(r"^(\w+)(\[\w+\])? ran in \d+\.\d\d s$")


def test_log_gets_one_line_per_item_and_a_total(tmp_path: Path, cli) -> None:
    graph = tmp_path / "g.yaml"
    graph.write_text(GRAPH % "true")
    first = cli("run", str(graph), "--out", str(tmp_path / "out"))  # not -q: progress is on
    assert first.returncode == 0, first.stderr
    assert "\r" not in first.stderr
    lines = first.stderr.splitlines()
    items = [line for line in lines if ITEM_LINE.match(line)]
    assert sorted(line.split(" ")[0] for line in items) == ["sp", "st[a]", "st[b]", "st[c]", "st[d]", "t"]
    warnings = [line for line in lines if line.startswith("WARNING")]
    assert len(warnings) == 4 and "only a rough result" in warnings[0]
    assert len(lines) == len(items) + len(warnings) + 1, first.stderr  # nothing else but the total
    assert re.fullmatch(r"total: 3 nodes, 4 items; 6 ran; 4 warnings; \d+\.\d\d s", lines[-1]), lines[-1]
    assert len(first.stderr.encode()) < 120 * len(lines)  # 4 items x 200 steps of bars would be kilobytes
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert len(report["warnings"]) == 4 and all("only a rough result" in w for w in report["warnings"])
    again = cli("run", str(graph))
    assert again.returncode == 0, again.stderr
    assert re.fullmatch(r"total: 3 nodes, 4 items; 6 cached; 0 warnings; \d+\.\d\d s\n", again.stderr), again.stderr


def test_terminal_gets_bars_and_no_item_lines(tmp_path: Path) -> None:
    graph = tmp_path / "g.yaml"
    graph.write_text(GRAPH % "false")
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a 100-column terminal
    proc = subprocess.Popen([sys.executable, "-m", "graphflow.cli", "run", str(graph)], stdout=subprocess.PIPE,
                            stderr=slave, cwd=tmp_path, env=cli_env(tmp_path / "cache"))
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=120) == 0
    text = b"".join(chunks).decode(errors="replace")
    assert "\r" in text and "st[a] steps" in text  # tqdm bars, labelled per item
    assert not any(ITEM_LINE.match(line.strip()) for line in text.splitlines())
    assert "total: 3 nodes, 4 items; 6 ran" in text
