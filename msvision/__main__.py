"""Command line: ``python -m msvision image-denoising INPUT -o OUTPUT [--model DIR_OR_ID] [--threads N]``.

``--sample`` runs on the noisy photo shipped with the package (msvision/data/noisy_sample.png).
``python -m msvision inspect GRAPH.pb [--inputs T ...] [--outputs T ...]`` reports a TensorFlow frozen graph's op
histogram, what msvision does not support in it, and whether it imports.
"""

import argparse
import sys
import time
from pathlib import Path

SAMPLE = Path(__file__).resolve().parent / "data" / "noisy_sample.png"


def inspect_main(argv) -> int:
    parser = argparse.ArgumentParser(
        prog="msvision inspect", description="a TensorFlow frozen graph's ops and whether msvision imports it"
    )
    parser.add_argument("graph", help="a frozen GraphDef (.pb)")
    parser.add_argument("--inputs", nargs="*", default=None, help="placeholder tensors (default: all)")
    parser.add_argument(
        "--outputs", nargs="*", default=None, help="output tensors (default: unconsumed ones)"
    )
    args = parser.parse_args(argv)

    from .errors import InvalidModelError
    from .importers.tf.inspect import describe

    try:
        report, ok = describe(args.graph, args.inputs, args.outputs)
    except (OSError, InvalidModelError) as e:
        print(f"msvision inspect: {e}", file=sys.stderr)
        return 1
    print(report)
    return 0 if ok else 1


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "inspect":
        return inspect_main(argv[1:])
    parser = argparse.ArgumentParser(prog="msvision", description=__doc__.splitlines()[0])
    parser.add_argument("task", choices=["image-denoising", "image-deblurring"])
    parser.add_argument("input", nargs="?", help="image file (or use --sample)")
    parser.add_argument("-o", "--output", required=True, help="where to write the result image")
    parser.add_argument(
        "--model", default=None, help="model directory or cached hub id (default: task default)"
    )
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--sample", action="store_true", help="use the bundled noisy sample photo")
    args = parser.parse_args(argv)
    if bool(args.input) == args.sample:
        parser.error("give an input image or --sample (not both)")

    from PIL import Image

    import msvision

    source = str(SAMPLE) if args.sample else args.input
    start = time.perf_counter()
    pipe = msvision.pipeline(args.task, model=args.model, threads=args.threads)
    loaded = time.perf_counter()
    result = pipe(source)["output_img"]
    done = time.perf_counter()
    Image.fromarray(result[:, :, ::-1]).save(args.output)  # output_img is BGR, like ModelScope's
    print(
        f"{args.task}: {source} -> {args.output} ({result.shape[1]}x{result.shape[0]}); "
        f"model {pipe.model_dir} loaded in {loaded - start:.2f} s, ran in {done - loaded:.2f} s "
        f"on {pipe.threads} thread(s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
