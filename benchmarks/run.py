"""The benchmark runner: one case per model in benchmarks/cases/.

    python3 benchmarks/run.py CASE [the case's options]     e.g. run.py nafnet --threads 2 --sizes 512
    python3 benchmarks/run.py --list

Every case times each engine (msvision, ModelScope's pipeline, ONNX Runtime where it applies) in its own process,
with the same threads, model directory and input, and appends its table to benchmarks/RESULTS.md (unless
--no-write). A new model adds one file to cases/ with a ``main(argv)``.
"""

from __future__ import annotations

import importlib
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def cases() -> list[str]:
    return sorted(
        f[:-3] for f in os.listdir(os.path.join(HERE, "cases")) if f.endswith(".py") and f[0] != "_"
    )


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "--list"):
        print(__doc__.strip(), "\n\ncases:", ", ".join(cases()))
        return 0
    if argv[0] not in cases():
        print(f"unknown case {argv[0]!r}; cases: {', '.join(cases())}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"cases.{argv[0]}")
    sys.argv = ["benchmarks/run.py", *argv]  # the command line the case records
    return module.main(argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main())
