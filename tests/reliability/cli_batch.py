"""Runs many `graphflow` CLI invocations in one interpreter: `python cli_batch.py CASES.json RESULTS.json`.

Each case is `{"args": [...], "env": {...}}`; it goes through `graphflow.cli.main` exactly as
`python -m graphflow.cli ARGS` would, with file descriptors 1 and 2 redirected to files so that
everything printed (tracebacks, log warnings, C-level output) is captured per case. One start-up
(torch and the node catalogue) instead of one per case keeps the default test run fast; the
`slow` variant runs every case as its own process.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path


def run_one(args: list[str], env: dict[str, str]) -> dict[str, object]:
    from graphflow.cli import main

    saved_env = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        try:
            try:
                main(list(args))
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except BaseException as exc:  # noqa: BLE001 - anything escaping main() is a finding
                import traceback

                traceback.print_exc()
                code = f"escaped {type(exc).__name__}"
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            for k, v in saved_env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        out.seek(0)
        err.seek(0)
        return {"code": code, "stdout": out.read().decode(errors="replace"),
                "stderr": err.read().decode(errors="replace")}


def main() -> None:
    cases = json.loads(Path(sys.argv[1]).read_text())
    results = {name: run_one(case["args"], case.get("env", {})) for name, case in cases.items()}
    Path(sys.argv[2]).write_text(json.dumps(results))


if __name__ == "__main__":
    main()
