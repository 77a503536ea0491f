"""`graphflow` command line: run, validate, explain, show, nodes, cache.

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

from . import api
from .api import open_cache
from .cache import DiskCache, default_cache_dir
from .errors import GraphInvalid, RunFailed, UserError
from .graph import Graph, InputRef, Link
from .ports import type_name
from .progress import ItemLines, PlanLines
from .registry import registry
from .values import FileBlob, FileTree

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
    """`--set` overrides; the rule is `Graph.apply_overrides` (kept here for older imports)."""
    graph.apply_overrides(sets)


def _parse_inputs(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        name, eq, value = pair.partition("=")
        if not eq or not name:
            raise UserError(f"cannot parse --input {pair!r}", param="--input", hint="use NAME=VALUE")
        out[name] = value
    return out


def _files_of(name: str, value: Any) -> dict[str, bytes] | None:
    """The files of one output (relative path -> bytes), None when the value is not a file."""
    if isinstance(value, FileBlob):
        return {f"{name}{value.suffix}": value.data}
    if isinstance(value, FileTree):
        return value.files
    return None


def _output_files(outputs: dict[str, Any]) -> dict[str, tuple[str, bytes]]:
    """Relative path -> (output name, bytes) of every file output: a FileBlob is `<name><suffix>`, a
    FileTree its own paths. Two outputs naming one file (compared case-insensitively, as macOS and
    Windows do) are a user error rather than one silently overwriting the other."""
    files: dict[str, tuple[str, bytes]] = {}
    owners: dict[str, tuple[str, str]] = {}
    for name, value in outputs.items():
        for rel, data in (_files_of(name, value) or {}).items():
            clash = owners.get(rel.casefold())
            if clash is not None:
                raise UserError(f"outputs '{clash[0]}' and '{name}' both write '{clash[1]}'", param="outputs",
                                hint="give one of the export nodes another file name (its params)")
            owners[rel.casefold()] = (name, rel)
            files[rel] = (name, data)
    return files


def output_entries(outputs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """What report.json says about each file output: its files, bytes and the node's summary (for
    exports: instances, materials, the instance-name -> identifier map)."""
    entries: dict[str, dict[str, Any]] = {}
    for name, value in outputs.items():
        files = _files_of(name, value)
        if files is None:
            continue
        entries[name] = {"files": list(files), "bytes": sum(len(d) for d in files.values()),
                         "summary": value.summary}
    return entries


def _unchanged(path: Path, data: bytes) -> bool:
    """The file is already there with these very bytes (a re-run with nothing changed rewrites nothing)."""
    try:
        return path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data
    except OSError:
        return False


def _write_outputs(outputs: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write every file output under `out_dir` atomically (temp file + rename); a file that already holds
    the same bytes is left alone (its time stamp too). Returns the paths written."""
    written = []
    for rel, (name, data) in _output_files(outputs).items():
        path = out_dir / rel
        if _unchanged(path, data):
            continue
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except OSError as exc:
            raise UserError(f"cannot write output '{name}': {exc.strerror}", file=str(path),
                            hint="pass a writable --out DIR") from exc
        written.append(path)
    return written


@app.command()
def run(
    graph_file: Path = typer.Argument(..., help="graph YAML file"),
    input: list[str] = typer.Option([], "--input", "-i", help="graph input NAME=VALUE (repeatable)"),
    set: list[str] = typer.Option([], "--set", "-s", help="NODE.params.KEY=VALUE (repeatable; * for all nodes) "
                                  "or params.NAME=VALUE (a graph-level value)"),
    out: Path | None = typer.Option(None, "--out", "-o", help="write outputs and report.json here"),
    cache: Path | None = typer.Option(None, "--cache", help="cache dir (default $GRAPHFLOW_CACHE or ~/.cache/graphflow)"),
    cache_mem: str = typer.Option("2GiB", "--cache-mem", help="memory tier bound, e.g. 512MiB, 4GiB, 0"),
    executor: str = typer.Option("local", "--executor", help="local or ray"),
    ray_address: str | None = typer.Option(None, "--ray-address", help="an existing Ray cluster (default: start one)"),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda"),
    report: Path | None = typer.Option(None, "--report", help="also write the run report JSON here"),
    max_texels: float | None = typer.Option(None, "--max-texels", help="budget: stop before texturing when the "
                                            "atlases would hold more texels than this (sets every node's "
                                            "max_texels param; e.g. 64e6)"),
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
    graph = _budgeted(_load(graph_file).apply_overrides(set), max_texels).check()
    inputs = _parse_inputs(input)
    if out is not None:
        _check_writable(out)
    tiers = open_cache(cache, memory_bytes=_parse_bytes(cache_mem))
    # bars redraw with carriage returns: right on a terminal, noise in a log (then one line per item)
    terminal = sys.stderr.isatty()
    try:
        result = api.run(graph, inputs, cache=tiers, executor=executor, device=device,
                         executor_options={"address": ray_address} if executor == "ray" else {},
                         listeners=([] if quiet else [PlanLines()]) + ([] if quiet or terminal else [ItemLines()]),
                         show_progress=terminal and not quiet)
    except RunFailed as exc:
        _write_report(exc.report, out, report, graph)
        if DEBUG:
            for detail in exc.details:
                typer.echo(detail, err=True)
        typer.echo(exc.report.summary(), err=True)
        _fail(str(exc), 2 if exc.user_error else 1)
        return
    result.report.outputs = output_entries(result.outputs)
    _write_report(result.report, out, report, graph)
    if out is not None:
        written = _write_outputs(result.outputs, out)
        for path in written:
            typer.echo(f"wrote {path}")
        unchanged = len(_output_files(result.outputs)) - len(written)
        if unchanged:
            typer.echo(f"{unchanged} file{'s' if unchanged != 1 else ''} in {out} already up to date")
    typer.echo(result.report.summary(), err=True)


def _budgeted(graph: Graph, max_texels: float | None) -> Graph:
    """`--max-texels`: the `max_texels` param of every node that has one (none: nothing to budget)."""
    if max_texels is None:
        return graph
    if max_texels <= 0:
        raise UserError(f"--max-texels must be positive, got {max_texels:g}", param="--max-texels")
    for nid in graph.nodes:
        try:
            fields = graph.node_class(nid).Params.model_fields
        except Exception:  # noqa: BLE001 - an unknown node type: `check()` reports it with the others
            continue
        if "max_texels" in fields:
            graph.set_param(nid, "max_texels", int(max_texels))
    return graph


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".graphflow-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"cannot write the output directory: {exc.strerror}", file=str(out),
                        hint="pass a writable --out DIR") from exc


def _write_report(rep: Any, out: Path | None, report: Path | None, graph: Graph) -> None:
    if out is not None:
        rep.write(out / "report.json")
        # the same report as a classic script, with the graph's nodes and edges: the run page (index.html,
        # report.page) opened from file:// may run a script beside it but not fetch report.json
        rep.write_script(out / "report.js", graph_description(graph))
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


@app.command("open")
def open_page(out: Path = typer.Argument(..., help="the --out DIR of a run")) -> None:
    """Open a run's page (OUT/index.html, written by the report.page node) in the default browser."""
    import webbrowser

    page = Path(out) / "index.html"
    if not page.is_file():
        raise UserError(f"no run page in {out}: {page.name} is missing", file=str(page),
                        hint="run a graph with a report.page node (every shipped texturing graph has one) "
                             "with --out DIR, then `graphflow open DIR`")
    url = page.resolve().as_uri()
    if not webbrowser.open(url):
        raise UserError(f"no browser could be started for {url}", file=str(page),
                        hint="open that file in a browser by hand")
    typer.echo(f"opened {url}")


@app.command()
def validate(graph_file: Path = typer.Argument(..., help="graph YAML file"),
             set: list[str] = typer.Option([], "--set", "-s", help="NODE.params.KEY=VALUE or params.NAME=VALUE"),
             ) -> None:
    """Report every problem of a graph at once (exit 2 if any)."""
    graph = _load(graph_file).apply_overrides(set).check()
    typer.echo(f"{graph_file}: ok ({len(graph.nodes)} nodes)")


@app.command()
def explain(
    graph_file: Path = typer.Argument(..., help="graph YAML file"),
    node: str = typer.Argument(..., help="node id"),
    item: str | None = typer.Option(None, "--item", help="the item of a mapped node (an instance, a scene)"),
    input: list[str] = typer.Option([], "--input", "-i", help="graph input NAME=VALUE, as given to `run`"),
    set: list[str] = typer.Option([], "--set", "-s", help="NODE.params.KEY=VALUE or params.NAME=VALUE, as given "
                                  "to `run`"),
    cache: Path | None = typer.Option(None, "--cache", help="cache dir (default $GRAPHFLOW_CACHE or ~/.cache/graphflow)"),
) -> None:
    """What a node's cache key is made of, and why it differs from the last run's."""
    from .explain import explain_key

    graph = _load(graph_file).apply_overrides(set).check()
    account = explain_key(graph, node, _parse_inputs(input), cache or default_cache_dir(), item)
    typer.echo("\n".join(account.lines()))


def _graph_edges(graph: Graph) -> list[tuple[str, str, str, str | None]]:
    """(source, node id, port, source output) per node input; a graph input's source is `in_<name>`."""
    edges: list[tuple[str, str, str, str | None]] = []
    for nid, spec in graph.nodes.items():
        for port, src in spec.inputs.items():
            left = f"in_{src.name}" if isinstance(src, InputRef) else src.node
            edges.append((left, nid, port, src.output if isinstance(src, Link) else None))
    return edges


def graph_description(graph: Graph) -> dict[str, Any]:
    """The graph as JSON data for pages: per node its type and inputs (port, source node or graph input,
    source output), the graph inputs and which node each output comes from."""
    nodes: dict[str, Any] = {nid: {"type": spec.type, "inputs": []} for nid, spec in graph.nodes.items()}
    for left, nid, port, output in _graph_edges(graph):
        nodes[nid]["inputs"].append({"port": port, "from": left, "output": output})
    return {"name": graph.name, "nodes": nodes, "inputs": list(graph.inputs),
            "outputs": {name: node for name, node in _graph_outputs(graph)}}


def _graph_outputs(graph: Graph) -> list[tuple[str, str | None]]:
    """(output name, the node it comes from; None for a graph input passed through)."""
    return [(name, src.node if isinstance(src, Link) else None) for name, src in graph.outputs.items()]


def _mermaid_lines(graph: Graph) -> list[str]:
    lines = ["flowchart LR"]
    lines += [f'  in_{name}[/"{name}"/]' for name in graph.inputs]
    lines += [f'  {nid}["{nid}<br/><small>{spec.type}</small>"]' for nid, spec in graph.nodes.items()]
    for left, nid, port, output in _graph_edges(graph):
        label = f"{output}→{port}" if output else port
        lines.append(f"  {left} -->|{label}| {nid}")
    for name, node in _graph_outputs(graph):
        lines.append(f'  out_{name}(["{name}"])')
        if node is not None:
            lines.append(f"  {node} --> out_{name}")
    return lines


def _dot_lines(graph: Graph) -> list[str]:
    lines = [f'digraph "{graph.name}" {{', "  rankdir=LR;"]
    lines += [f'  "in_{name}" [label="{name}", shape=parallelogram];' for name in graph.inputs]
    lines += [f'  "{nid}" [label="{nid}\\n{spec.type}", shape=box];' for nid, spec in graph.nodes.items()]
    lines += [f'  "{left}" -> "{nid}" [label="{port}"];' for left, nid, port, _ in _graph_edges(graph)]
    for name, node in _graph_outputs(graph):
        lines.append(f'  "out_{name}" [label="{name}", shape=oval];')
        if node is not None:
            lines.append(f'  "{node}" -> "out_{name}";')
    lines.append("}")
    return lines


@app.command()
def show(graph_file: Path = typer.Argument(...), format: str = typer.Option("mermaid", "--format", "-f")) -> None:
    """Print the graph as mermaid or graphviz dot."""
    graph = _load(graph_file)
    if format == "mermaid":
        lines = _mermaid_lines(graph)
    elif format == "dot":
        lines = _dot_lines(graph)
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
