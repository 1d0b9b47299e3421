"""The ``msvision`` command (also ``python -m msvision``).

    msvision run TASK INPUT... [--model DIR_OR_ID] [-o OUT] [--threads N] [--precision fp32|bf16]
                 [--jsonl FILE] [--draw] [--keep-going] [--resume] [-q | -v]
    msvision tasks | models | info
    msvision inspect GRAPH.pb [--inputs T ...] [--outputs T ...] [--fix NAME=VALUE ...]
    msvision TASK IMAGE -o OUTPUT [--model DIR_OR_ID] [--threads N] [--precision fp32|bf16]
                                                                      (one image; --sample: the bundled photo)

INPUT is image files, folders (searched recursively for image extensions), glob patterns (``'photos/**/*.jpg'``)
or a ``.txt`` file listing paths, one per line (relative ones from the current directory). Image results
(denoising, matting) are written under OUT with the input's path relative to its INPUT argument, as PNG;
detection and keypoint results go to JSON Lines, one object per image (``path`` and the result's keys), to
``--jsonl FILE`` (default ``OUT/results.jsonl`` with ``-o``, else standard output); ``--draw`` also writes the
annotated images under OUT. Exit status: 0 all inputs done, 1 some inputs failed, 2 a usage error (bad arguments,
no inputs, a model that cannot be loaded).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from .utils.constant import Tasks

SAMPLE = Path(__file__).resolve().parent / "data" / "noisy_sample.png"
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm"}
#: tasks whose result is an image (``output_img``), written as files; the others are records
IMAGE_TASKS = {
    Tasks.image_denoising,
    Tasks.image_deblurring,
    Tasks.image_portrait_enhancement,
    Tasks.image_portrait_stylization,
    Tasks.portrait_matting,
    Tasks.universal_matting,
}
SUBCOMMANDS = ("run", "tasks", "models", "info", "inspect")
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A problem with the command line itself (exit status 2)."""


@dataclass(frozen=True)
class Job:
    path: Path  # the image file
    relative: Path  # its path below the INPUT argument it came from (the layout of the outputs)


def _is_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


def _images_in(folder: Path) -> list[Path]:
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(root) / f for f in sorted(files) if Path(f).suffix.lower() in IMAGE_EXTENSIONS]
    return found


def _glob_base(pattern: str) -> Path:
    """The folder part of a glob before its first wildcard (what outputs are laid out relative to)."""
    parts = Path(pattern).parts
    plain = []
    for part in parts[:-1]:
        if _is_glob(part):
            break
        plain.append(part)
    return Path(*plain) if plain else Path(".")


def _common_parent(paths: list[Path]) -> Path:
    parents = [str(p.resolve().parent) for p in paths]
    return Path(os.path.commonpath(parents)) if parents else Path(".")


def expand_inputs(arguments: list[str]) -> list[Job]:
    """The image files named by INPUT arguments, in order, each once; UsageError for an argument naming
    nothing."""
    jobs: list[Job] = []
    for arg in arguments:
        path = Path(arg)
        if path.is_dir():
            found = [Job(p, p.relative_to(path)) for p in _images_in(path)]
            if not found:
                raise UsageError(f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) in folder {arg}")
        elif path.is_file() and path.suffix.lower() == ".txt":
            listed = _read_list(path)
            if not listed:
                raise UsageError(f"the list {arg} names no paths")
            base = _common_parent(listed)
            found = [Job(p, p.resolve().relative_to(base)) for p in listed]
        elif path.is_file():
            found = [Job(path, Path(path.name))]
        elif _is_glob(arg):
            base = _glob_base(arg)
            matches = sorted(
                Path(p) for p in glob.glob(arg, recursive=True) if Path(p).suffix.lower() in IMAGE_EXTENSIONS
            )
            if not matches:
                raise UsageError(f"the pattern {arg!r} matches no images")
            found = [Job(p, p.relative_to(base)) for p in matches]
        else:
            raise UsageError(f"no such file or folder: {arg}")
        jobs += found
    seen, unique = set(), []
    for job in jobs:
        key = job.path.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(job)
    return unique


def _read_list(path: Path) -> list[Path]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read the list {path}: {e}") from None
    return [Path(line.strip()) for line in lines if line.strip() and not line.lstrip().startswith("#")]


def _image_output(out: Path, job: Job) -> Path:
    return out / job.relative.with_suffix(".png")


def _drawn_output(out: Path, job: Job) -> Path:
    return out / job.relative


def _check_collisions(jobs: list[Job], target) -> None:
    from .results import check_distinct_outputs

    try:
        check_distinct_outputs((job.path, target(job)) for job in jobs)
    except ValueError as e:
        raise UsageError(str(e)) from None


def _done_paths(jsonl: Path) -> set[str]:
    """Inputs already recorded in a JSON Lines file (for --resume). A torn last line (an interrupted run) is cut
    off, so that its input runs again and the records appended after it stay one per line."""
    done = set()
    try:
        with open(jsonl, "rb+") as f:
            data = f.read()
            if data and not data.endswith(b"\n"):
                f.truncate(data.rfind(b"\n") + 1)
        with open(jsonl, encoding="utf-8") as f:
            for line in f:
                try:
                    done.add(json.loads(line)["path"])
                except (ValueError, KeyError, TypeError):
                    continue
    except FileNotFoundError:
        pass
    return done


def _progress(jobs, quiet: bool):
    if quiet or len(jobs) < 2 or not sys.stdout.isatty():
        return jobs
    try:
        from tqdm import tqdm
    except ImportError:
        return jobs
    return tqdm(jobs, unit="img", file=sys.stderr, dynamic_ncols=True)


def _describe(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        text = error.strerror
    return f"{type(error).__name__}: {text}"


def run_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="msvision run", description="run a task's pipeline over images, folders, globs or lists of paths"
    )
    parser.add_argument("task", help="a task, e.g. face-detection (see: msvision tasks)")
    parser.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="image files, folders, globs or .txt lists"
    )
    parser.add_argument(
        "--model", default=None, help="model directory or cached hub id (default: the task's)"
    )
    parser.add_argument("-o", "--output", type=Path, default=None, help="folder for image results and --draw")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: every usable CPU)")
    parser.add_argument(
        "--precision", choices=("fp32", "bf16"), default="fp32", help="convolution arithmetic (default fp32)"
    )
    parser.add_argument("--jsonl", type=Path, default=None, help="JSON Lines file for detection results")
    parser.add_argument("--draw", action="store_true", help="also write annotated images under -o")
    parser.add_argument("--keep-going", action="store_true", help="continue past inputs that fail")
    parser.add_argument("--resume", action="store_true", help="skip inputs whose outputs already exist")
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no summary")
    verbosity.add_argument("-v", "--verbose", action="store_true", help="one line per image, tracebacks")
    args = parser.parse_args(argv)

    from .pipelines.builder import PIPELINES

    if args.task not in PIPELINES:
        parser.error(f"unknown task {args.task!r}; choose from {', '.join(sorted(PIPELINES))}")
    image_task = args.task in IMAGE_TASKS
    if (image_task or args.draw) and args.output is None:
        parser.error(
            f"-o OUT is needed for {'--draw' if args.draw else 'the images ' + args.task + ' writes'}"
        )
    if image_task and args.draw:
        parser.error(f"--draw is for detection and keypoint tasks; {args.task} writes images already")
    jsonl = args.jsonl
    if jsonl is None and not image_task and args.output is not None:
        jsonl = args.output / "results.jsonl"
    try:
        jobs = expand_inputs(args.inputs)
        if image_task:
            _check_collisions(jobs, lambda job: _image_output(args.output, job))
        elif args.draw:
            _check_collisions(jobs, lambda job: _drawn_output(args.output, job))
    except UsageError as e:
        parser.error(str(e))

    done = _done_paths(jsonl) if (args.resume and jsonl is not None) else set()

    def finished(job: Job) -> bool:
        if not args.resume:
            return False
        if image_task:
            return _image_output(args.output, job).is_file() and (jsonl is None or str(job.path) in done)
        return (jsonl is None or str(job.path) in done) and (
            not args.draw or _drawn_output(args.output, job).is_file()
        )

    todo = [job for job in jobs if not finished(job)]
    skipped = len(jobs) - len(todo)

    import msvision

    start = time.perf_counter()
    try:
        pipe = msvision.pipeline(args.task, model=args.model, threads=args.threads, precision=args.precision)
    except Exception as e:  # a model that cannot be loaded: nothing can run
        if args.verbose:
            traceback.print_exc()
        print(f"msvision run: cannot load the {args.task} model: {_describe(e)}", file=sys.stderr)
        return EXIT_USAGE
    loaded = time.perf_counter()

    from .drawing import draw
    from .io import write_image
    from .results import dumps, to_record

    sink = None
    if jsonl is not None:
        jsonl.parent.mkdir(parents=True, exist_ok=True)
        sink = open(jsonl, "a" if args.resume else "w", encoding="utf-8")
    elif not image_task:
        sink = sys.stdout
    failed: list[str] = []
    ok = 0
    try:
        for job in _progress(todo, args.quiet):
            try:
                result = pipe(str(job.path))
                record_fields = {"path": str(job.path)}
                if image_task:
                    dest = _image_output(args.output, job)
                    write_image(dest, result["output_img"])
                    record_fields["output"] = str(dest)
                elif args.draw:
                    write_image(_drawn_output(args.output, job), draw(str(job.path), result))
                if sink is not None:
                    sink.write(dumps(to_record(result, **record_fields)) + "\n")
                    sink.flush()
                ok += 1
                if args.verbose:
                    print(f"{job.path}: ok", file=sys.stderr)
            except Exception as e:  # MemoryLimitError (a huge image) included: one input's failure
                failed.append(str(job.path))
                if args.verbose:
                    traceback.print_exc()
                print(f"msvision run: {job.path}: {_describe(e)}", file=sys.stderr)
                if not args.keep_going:
                    break
    finally:
        if sink is not None and sink is not sys.stdout:
            sink.close()
    elapsed = time.perf_counter() - loaded
    if not args.quiet:
        not_run = len(todo) - ok - len(failed)
        parts = [f"{ok} done", f"{len(failed)} failed"]
        if skipped:
            parts.append(f"{skipped} skipped (--resume)")
        if not_run:
            parts.append(f"{not_run} not run (stopped at the first failure; --keep-going continues)")
        print(
            f"msvision run {args.task}: {len(jobs)} input(s): {', '.join(parts)}; model loaded in "
            f"{loaded - start:.2f} s, {ok / elapsed if elapsed > 0 and ok else 0:.2f} images/s on "
            f"{pipe.threads} thread(s)",
            file=sys.stderr,
        )
    return EXIT_FAILED if failed else EXIT_OK


def tasks_main(argv: list[str]) -> int:
    argparse.ArgumentParser(
        prog="msvision tasks", description="tasks, pipeline types and default models"
    ).parse_args(argv)
    from .hub import DEFAULT_MODEL_FOR_TASK, EMBEDDED_DEFAULT_FOR_TASK
    from .pipelines.builder import PIPELINES

    rows = [("task", "pipeline types (configuration.json)", "default model")]
    for task in sorted(PIPELINES):
        default = DEFAULT_MODEL_FOR_TASK.get(task, "- (model= is required)")
        if task in EMBEDDED_DEFAULT_FOR_TASK:
            default += " (else the embedded default)"
        rows.append((task, ", ".join(sorted(PIPELINES[task])), default))
    _print_table(rows)
    return EXIT_OK


def models_main(argv: list[str]) -> int:
    argparse.ArgumentParser(
        prog="msvision models",
        description="model directories in the local ModelScope cache that msvision runs",
    ).parse_args(argv)
    from .hub import cached_model_dirs, model_cache_root, read_configuration
    from .pipelines.builder import PIPELINES

    rows = [("model", "task", "pipeline type", "directory")]
    for model_id, path in cached_model_dirs():
        try:
            config = read_configuration(path)
        except (OSError, ValueError):  # unreadable or invalid configuration.json
            continue
        task = config.get("task")
        section = config.get("pipeline")
        kind = section.get("type") if isinstance(section, dict) else None
        if task in PIPELINES and kind in PIPELINES[task]:
            rows.append((model_id, task, kind, str(path)))
    if len(rows) == 1:
        print(f"no model msvision runs is in the ModelScope cache ({model_cache_root()}; MODELSCOPE_CACHE)")
        return EXIT_OK
    _print_table(rows)
    return EXIT_OK


def info_main(argv: list[str]) -> int:
    argparse.ArgumentParser(prog="msvision info", description="version, oneDNN, ISA and threads").parse_args(
        argv
    )
    import msvision

    from .runtime import available_cpus

    info = msvision.build_info()
    rows = [
        ("msvision", msvision.__version__),
        ("oneDNN", f"{info['onednn_version']} ({info['onednn_commit']}), {info['cpu_runtime']} threading"),
        ("ISA", info["isa"]),
        ("threads", f"{info['threads']} by default ({available_cpus()} CPU(s) usable)"),
        ("python", sys.version.split()[0]),
    ]
    _print_table(rows, header=False)
    return EXIT_OK


def _print_table(rows, header: bool = True) -> None:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]) - 1)]
    for n, row in enumerate(rows):
        cells = [str(c).ljust(w) for c, w in zip(row, widths)] + [str(row[-1])]
        print("  ".join(cells).rstrip())
        if header and n == 0:
            print("  ".join("-" * w for w in widths + [len(str(row[-1]))]))


def inspect_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="msvision inspect", description="a TensorFlow frozen graph's ops and whether msvision imports it"
    )
    parser.add_argument("graph", help="a frozen GraphDef (.pb)")
    parser.add_argument("--inputs", nargs="*", default=None, help="placeholder tensors (default: all)")
    parser.add_argument(
        "--outputs", nargs="*", default=None, help="output tensors (default: unconsumed ones)"
    )
    parser.add_argument(
        "--fix",
        nargs="*",
        default=[],
        metavar="NAME=VALUE",
        help="placeholders fixed to a constant (true/false or a number; scalar bool ones default to false)",
    )
    args = parser.parse_args(argv)

    from .errors import InvalidModelError
    from .importers.tf.inspect import describe

    fixed = {}
    for item in args.fix:
        name, sep, value = item.partition("=")
        if not sep or not name:
            print(f"msvision inspect: --fix takes NAME=VALUE, got {item!r}", file=sys.stderr)
            return EXIT_USAGE
        low = value.strip().lower()
        try:
            fixed[name] = {"true": True, "false": False}[low] if low in ("true", "false") else float(value)
        except ValueError:
            print(
                f"msvision inspect: --fix {name}: {value!r} is not true, false or a number", file=sys.stderr
            )
            return EXIT_USAGE
    try:
        report, ok = describe(args.graph, args.inputs, args.outputs, fixed)
    except (OSError, InvalidModelError) as e:
        print(f"msvision inspect: {e}", file=sys.stderr)
        return EXIT_FAILED
    print(report)
    return EXIT_OK if ok else EXIT_FAILED


def one_image_main(argv: list[str]) -> int:
    """The original form: ``msvision TASK IMAGE -o OUTPUT`` (image tasks), ``--sample`` for the bundled photo."""
    parser = argparse.ArgumentParser(prog="msvision", description="run an image task on one image")
    parser.add_argument("task", choices=sorted(IMAGE_TASKS))
    parser.add_argument("input", nargs="?", help="image file (or use --sample)")
    parser.add_argument("-o", "--output", required=True, help="where to write the result image")
    parser.add_argument(
        "--model", default=None, help="model directory or cached hub id (default: task default)"
    )
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--sample", action="store_true", help="use the bundled noisy sample photo")
    args = parser.parse_args(argv)
    if bool(args.input) == args.sample:
        parser.error("give an input image or --sample (not both)")

    import msvision

    from .io import write_image

    source = str(SAMPLE) if args.sample else args.input
    start = time.perf_counter()
    try:
        pipe = msvision.pipeline(args.task, model=args.model, threads=args.threads, precision=args.precision)
        loaded = time.perf_counter()
        result = pipe(source)["output_img"]
        done = time.perf_counter()
        write_image(args.output, result)
    except Exception as e:
        print(f"msvision {args.task}: {source}: {_describe(e)}", file=sys.stderr)
        return EXIT_FAILED
    print(
        f"{args.task}: {source} -> {args.output} ({result.shape[1]}x{result.shape[0]}); "
        f"model {pipe.model_dir} loaded in {loaded - start:.2f} s, ran in {done - loaded:.2f} s "
        f"on {pipe.threads} thread(s)"
    )
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return EXIT_OK if argv else EXIT_USAGE
    if argv[0] in ("-V", "--version"):
        import msvision

        print(f"msvision {msvision.__version__}")
        return EXIT_OK
    command = {
        "run": run_main,
        "tasks": tasks_main,
        "models": models_main,
        "info": info_main,
        "inspect": inspect_main,
    }.get(argv[0])
    try:
        if command is not None:
            return command(argv[1:])
        return one_image_main(argv)
    except SystemExit as e:  # argparse: 2 on a usage error, 0 for --help
        return e.code if isinstance(e.code, int) else EXIT_USAGE
