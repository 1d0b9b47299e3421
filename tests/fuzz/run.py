"""Runs every fuzz target (tests/fuzz/targets.py) for a bounded time, as CI does; exits non-zero on any crash,
hang (an input taking over --timeout seconds) or runaway memory, and says where the input that did it is.

    python3 tests/fuzz/run.py --seconds 20                  (CI: 20 s per target)
    python3 tests/fuzz/run.py --seconds 3600 --keep-corpus  (a longer hunt; the grown corpus is kept)

A failing input goes into tests/fuzz/regressions/<target>/ with the fix, where tests/test_fuzz_regressions.py
replays it on every test run.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from targets import TARGETS  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=20, help="fuzzing time per target")
    parser.add_argument("--timeout", type=int, default=10, help="seconds one input may take")
    parser.add_argument("--rss-mb", type=int, default=3072, help="memory limit of a fuzzing process")
    parser.add_argument("--targets", nargs="*", default=list(TARGETS), choices=list(TARGETS))
    parser.add_argument("--keep-corpus", action="store_true", help="keep the grown corpus (prints where)")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="msvision-fuzz-run-"))
    failed = []
    for target in args.targets:
        corpus = work / "corpus" / target
        shutil.copytree(HERE / "seeds" / target, corpus)
        for regression in sorted((HERE / "regressions" / target).glob("*")):
            shutil.copy(regression, corpus / f"regression-{regression.name}")
        artifacts = work / "artifacts" / target
        artifacts.mkdir(parents=True)
        cmd = [
            sys.executable,
            str(HERE / "targets.py"),
            target,
            str(corpus),
            f"-max_total_time={args.seconds}",
            f"-timeout={args.timeout}",
            f"-rss_limit_mb={args.rss_mb}",
            f"-artifact_prefix={artifacts}/",
            "-print_final_stats=1",
        ]
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=args.seconds + 600)
        stats = [
            line
            for line in run.stderr.splitlines()
            if line.startswith(("stat::number_of_executed_units", "#"))
        ]
        executed = next((line.split(":")[-1].strip() for line in stats if "executed_units" in line), "?")
        found = sorted(artifacts.iterdir())
        if run.returncode != 0 or found:
            failed.append(target)
            print(f"fuzz {target}: FAILED (exit {run.returncode}); inputs: {[str(p) for p in found]}")
            print("\n".join(run.stderr.splitlines()[-40:]))
        else:
            print(
                f"fuzz {target}: ok, {executed} inputs in {args.seconds} s, corpus {len(list(corpus.iterdir()))}"
            )
    if args.keep_corpus:
        print(f"corpus kept in {work / 'corpus'}")
    elif not failed:
        shutil.rmtree(work, ignore_errors=True)
    if failed:
        print(
            f"fuzz: {len(failed)} target(s) failed: {', '.join(failed)}; failing inputs kept in {work / 'artifacts'}"
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
