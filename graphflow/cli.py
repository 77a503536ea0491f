"""`graphflow` command line: run, validate, show, nodes, cache.

Exit codes: 0 success, 2 a user error (bad graph, params, inputs or files; the
message names the culprit and what to do), 1 a bug. No traceback unless
`--debug`.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Any

import typer
import yaml

from .api import open_cache
from .cache import DiskCache, default_cache_dir
from .errors import GraphInvalid, UserError
from .executors import make_executor
from .graph import Graph, InputRef, Link
from .ports import type_name
from .progress import EventBus
from .registry import registry
from .scheduler import RunFailed, Scheduler
from .values import FileBlob

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Typed node graphs for texturing 3D scenes, with content-addressed caching.")
cache_app = typer.Typer(no_args_is_help=True, help="Inspect or clear the on-disk cache.")
app.add_typer(cache_app, name="cache")

DEBUG = False


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _load(graph_file: Path) -> Graph:
    return Graph.from_yaml(Path(graph_file))


def apply_overrides(graph: Graph, sets: list[str]) -> None:
    """`--set NODE.params.KEY=VALUE` (VALUE parsed as YAML); `*.params.KEY` sets every node having KEY."""
    for item in sets:
        target, eq, raw = item.partition("=")
        parts = target.split(".")
        if not eq or len(parts) < 3 or parts[1] != "params":
            raise UserError(f"cannot parse --set {item!r}", param="--set", hint="use NODE.params.KEY=VALUE")
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError as exc:
            raise UserError(f"--set {item!r}: the value is not valid YAML", param="--set") from exc
        node, key = parts[0], ".".join(parts[2:])
        if node == "*":
            hits = [nid for nid in graph.nodes
                    if parts[2] in graph.node_class(nid).Params.model_fields]
            if not hits:
                raise UserError(f"no node has a param '{parts[2]}'", param=f"--set {target}")
            for nid in hits:
                graph.set_param(nid, key, value)
        else:
            if node not in graph.nodes:
                raise UserError(f"--set names unknown node '{node}'", param=f"--set {target}",
                                hint=f"nodes: {', '.join(graph.nodes)}")
            graph.set_param(node, key, value)


def _parse_inputs(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        name, eq, value = pair.partition("=")
        if not eq or not name:
            raise UserError(f"cannot parse --input {pair!r}", param="--input", hint="use NAME=VALUE")
        out[name] = value
    return out


def _write_outputs(outputs: dict[str, Any], out_dir: Path) -> list[Path]:
    written = []
    for name, value in outputs.items():
        if isinstance(value, FileBlob):
            path = out_dir / f"{name}{value.suffix}"
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_bytes(value.data)
            os.replace(tmp, path)
            written.append(path)
    return written


@app.command()
def run(
    graph_file: Path = typer.Argument(..., help="graph YAML file"),
    input: list[str] = typer.Option([], "--input", "-i", help="graph input NAME=VALUE (repeatable)"),
    set: list[str] = typer.Option([], "--set", "-s", help="NODE.params.KEY=VALUE (repeatable; * for all nodes)"),
    out: Path | None = typer.Option(None, "--out", "-o", help="write outputs and report.json here"),
    cache: Path | None = typer.Option(None, "--cache", help="cache dir (default $GRAPHFLOW_CACHE or ~/.cache/graphflow)"),
    cache_mem: str = typer.Option("2GiB", "--cache-mem", help="memory tier bound, e.g. 512MiB, 4GiB, 0"),
    executor: str = typer.Option("local", "--executor", help="local or ray"),
    ray_address: str | None = typer.Option(None, "--ray-address", help="an existing Ray cluster (default: start one)"),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda"),
    report: Path | None = typer.Option(None, "--report", help="also write the run report JSON here"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
    debug: bool = typer.Option(False, "--debug", help="show tracebacks"),
) -> None:
    """Run a graph; only what changed since the last run is recomputed."""
    global DEBUG
    DEBUG = DEBUG or debug
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise UserError(f"unknown device '{device}'", param="--device", hint="use cpu or cuda")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UserError("--device cuda but no CUDA device is visible", param="--device",
                            hint="install a CUDA build of torch on a GPU machine, or use --device cpu")
    graph = _load(graph_file)
    apply_overrides(graph, set)
    graph.check()
    inputs = _parse_inputs(input)
    if out is not None:
        try:
            out.mkdir(parents=True, exist_ok=True)
            probe = out / ".graphflow-write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise UserError(f"cannot write the output directory: {exc.strerror}", file=str(out),
                            hint="pass a writable --out DIR") from exc
    tiers = open_cache(cache, memory_bytes=_parse_bytes(cache_mem))
    options = {"address": ray_address} if executor == "ray" else {}
    execu = make_executor(executor, **options)
    try:
        scheduler = Scheduler(graph, tiers, execu, device=device, bus=EventBus(), show_progress=not quiet)
        try:
            result = scheduler.run(inputs)
        except RunFailed as exc:
            _write_report(exc.report, out, report)
            if DEBUG:
                for detail in exc.details:
                    typer.echo(detail, err=True)
            _fail(str(exc), 2 if exc.user_error else 1)
            return
    finally:
        execu.close()
    _write_report(result.report, out, report)
    if out is not None:
        for path in _write_outputs(result.outputs, out):
            typer.echo(f"wrote {path}")
    typer.echo(result.report.summary(), err=True)


def _write_report(rep: Any, out: Path | None, report: Path | None) -> None:
    if out is not None:
        rep.write(out / "report.json")
    if report is not None:
        rep.write(report)


def _parse_bytes(text: str) -> int | None:
    units = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}
    t = text.strip().lower()
    num = t.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = t[len(num):]
    if unit not in units or not num:
        raise UserError(f"cannot parse a size from {text!r}", param="--cache-mem", hint="e.g. 512MiB or 4GiB")
    return int(float(num) * units[unit])


@app.command()
def validate(graph_file: Path = typer.Argument(..., help="graph YAML file"),
             set: list[str] = typer.Option([], "--set", "-s")) -> None:
    """Report every problem of a graph at once (exit 2 if any)."""
    graph = _load(graph_file)
    apply_overrides(graph, set)
    graph.check()
    typer.echo(f"{graph_file}: ok ({len(graph.nodes)} nodes)")


@app.command()
def show(graph_file: Path = typer.Argument(...), format: str = typer.Option("mermaid", "--format", "-f")) -> None:
    """Print the graph as mermaid or graphviz dot."""
    graph = _load(graph_file)
    lines: list[str]
    if format == "mermaid":
        lines = ["flowchart LR"]
        for name in graph.inputs:
            lines.append(f'  in_{name}[/"{name}"/]')
        for nid, spec in graph.nodes.items():
            lines.append(f'  {nid}["{nid}<br/><small>{spec.type}</small>"]')
        for nid, spec in graph.nodes.items():
            for port, src in spec.inputs.items():
                left = f"in_{src.name}" if isinstance(src, InputRef) else src.node
                label = port if not (isinstance(src, Link) and src.output) else f"{src.output}→{port}"
                lines.append(f"  {left} -->|{label}| {nid}")
        for name, src in graph.outputs.items():
            lines.append(f'  out_{name}(["{name}"])')
            if isinstance(src, Link):
                lines.append(f"  {src.node} --> out_{name}")
    elif format == "dot":
        lines = [f'digraph "{graph.name}" {{', "  rankdir=LR;"]
        for name in graph.inputs:
            lines.append(f'  "in_{name}" [label="{name}", shape=parallelogram];')
        for nid, spec in graph.nodes.items():
            lines.append(f'  "{nid}" [label="{nid}\\n{spec.type}", shape=box];')
        for nid, spec in graph.nodes.items():
            for port, src in spec.inputs.items():
                left = f"in_{src.name}" if isinstance(src, InputRef) else src.node
                lines.append(f'  "{left}" -> "{nid}" [label="{port}"];')
        for name, src in graph.outputs.items():
            lines.append(f'  "out_{name}" [label="{name}", shape=oval];')
            if isinstance(src, Link):
                lines.append(f'  "{src.node}" -> "out_{name}";')
        lines.append("}")
    else:
        raise UserError(f"unknown format '{format}'", param="--format", hint="use mermaid or dot")
    typer.echo("\n".join(lines))


@app.command()
def nodes(as_json: bool = typer.Option(False, "--json", help="machine-readable")) -> None:
    """List registered node types with their param schemas and port types."""
    listing = []
    for name in registry.names():
        cls = registry.types[name]
        listing.append({
            "name": name, "version": cls.version, "doc": (cls.__doc__ or "").strip().split("\n")[0],
            "map_over": list(cls.mapped_inputs()), "cache": cls.cache,
            "inputs": {p.name: {"type": type_name(p.type), "required": p.required}
                       for p in cls.input_ports().values()},
            "outputs": {k: type_name(v) for k, v in cls.output_ports().items()},
            "params": cls.Params.model_json_schema(),
            "resources": {"gpu": cls.resources.gpu, "num_cpus": cls.resources.num_cpus},
        })
    if as_json:
        typer.echo(json.dumps(listing, indent=2))
        return
    for n in listing:
        ins = ", ".join(f"{k}: {v['type']}{'' if v['required'] else '?'}" for k, v in n["inputs"].items())
        outs = ", ".join(f"{k}: {v}" for k, v in n["outputs"].items())
        params = ", ".join(n["params"].get("properties", {}))
        typer.echo(f"{n['name']} (v{n['version']})  ({ins}) -> ({outs})\n    params: {params}")


@cache_app.command("info")
def cache_info(cache: Path | None = typer.Option(None, "--cache")) -> None:
    """Where the cache is and how big."""
    typer.echo(json.dumps(DiskCache(cache or default_cache_dir()).info()))


@cache_app.command("clear")
def cache_clear(cache: Path | None = typer.Option(None, "--cache")) -> None:
    """Delete every cache entry."""
    removed = DiskCache(cache or default_cache_dir()).clear()
    typer.echo(f"removed {removed} entries")


def main(argv: list[str] | None = None) -> None:
    global DEBUG
    args = sys.argv[1:] if argv is None else argv
    DEBUG = "--debug" in args
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        code = app(args=args, prog_name="graphflow", standalone_mode=False)
        if code == 130:  # typer turns Ctrl-C into a silent exit code 130 when not standalone
            typer.echo("interrupted: finished work is in the cache; run the same command to resume", err=True)
        if isinstance(code, int) and code:
            sys.exit(code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except GraphInvalid as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except UserError as exc:
        if DEBUG:
            traceback.print_exc()
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted: finished work is in the cache; run the same command to resume", err=True)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(2)
        if isinstance(exc, click.exceptions.Abort):
            typer.echo("interrupted: finished work is in the cache; run the same command to resume", err=True)
            sys.exit(130)
        if DEBUG:
            traceback.print_exc()
        typer.echo(f"error: internal error ({type(exc).__name__}: {exc}); rerun with --debug and report it", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
