"""The ``msvision`` command end to end, in subprocesses: folders, globs and lists of real photos, JSON Lines equal
to the Python API's results, image outputs, --resume, --keep-going, exit codes, progress only on a terminal."""

import json
import os
import pty
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

import msvision
from msvision.results import to_record

PHOTOS = ["office1.jpg", "office3.jpg", "ulfd_1.jpg", "ulfd_2.jpg"]
NESTED = ["ulfd_5.jpg"]


def msvision_cli(*args, cwd=None, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "msvision", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        **kwargs,
    )


@pytest.fixture(scope="module")
def ulfd_dir(shared_dir):
    return str(shared_dir / "assets/modelscope/damo/cv_manual_face-detection_ulfd")


@pytest.fixture()
def photo_folder(tmp_path, shared_dir):
    """Real face photos, a nested folder, a corrupt .jpg and a non-image file."""
    faces = shared_dir / "assets/images/faces"
    root = tmp_path / "photos"
    (root / "nested").mkdir(parents=True)
    for name in PHOTOS:
        shutil.copy(faces / name, root / name)
    for name in NESTED:
        shutil.copy(faces / name, root / "nested" / name)
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    (root / "notes.txt").write_text("not an image, and not picked up from a folder\n")
    return root


def expected_paths(root):
    """What a folder argument expands to: files sorted, then subfolders (sorted), recursively."""
    return [root / "broken.jpg", *(root / n for n in sorted(PHOTOS)), *(root / "nested" / n for n in NESTED)]


def api_records(paths, model_dir):
    pipe = msvision.pipeline("face-detection", model=model_dir, threads=1)
    return [to_record(pipe(str(p)), path=str(p)) for p in paths]


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_folder_keep_going_writes_the_api_results(tmp_path, photo_folder, ulfd_dir):
    out = tmp_path / "out"
    r = msvision_cli(
        "run", "face-detection", photo_folder, "--model", ulfd_dir, "-o", out, "--threads", 1, "--keep-going"
    )
    assert r.returncode == 1, r.stderr  # one input failed
    good = [p for p in expected_paths(photo_folder) if p.name != "broken.jpg"]
    records = read_jsonl(out / "results.jsonl")
    assert records == api_records(good, ulfd_dir)  # same faces, boxes, scores, landmarks, exactly
    assert all(len(rec["boxes"]) > 0 for rec in records)
    errors = [line for line in r.stderr.splitlines() if line.startswith("msvision run: ")]
    assert len(errors) == 1 and "broken.jpg" in errors[0] and "ImageDecodeError" in errors[0]
    assert "Traceback" not in r.stderr
    assert "5 done, 1 failed" in r.stderr
    assert "\r" not in r.stderr and "img/s" not in r.stderr  # no progress bar: stdout is not a terminal
    assert r.stdout == ""


def test_stops_at_the_first_failure_without_keep_going(tmp_path, photo_folder, ulfd_dir):
    out = tmp_path / "out"
    r = msvision_cli("run", "face-detection", photo_folder, "--model", ulfd_dir, "-o", out)
    assert r.returncode == 1
    assert read_jsonl(out / "results.jsonl") == []  # broken.jpg comes first
    assert "5 not run" in r.stderr


def test_resume_runs_only_what_is_missing(tmp_path, photo_folder, ulfd_dir):
    (photo_folder / "broken.jpg").unlink()
    out = tmp_path / "out"
    args = ("run", "face-detection", photo_folder, "--model", ulfd_dir, "-o", out, "--threads", 1)
    assert msvision_cli(*args).returncode == 0
    full = read_jsonl(out / "results.jsonl")
    assert len(full) == len(PHOTOS) + len(NESTED)
    lines = (out / "results.jsonl").read_text().splitlines(keepends=True)
    (out / "results.jsonl").write_text("".join(lines[:2]) + lines[2][:20])  # two done, one torn line
    r = msvision_cli(*args, "--resume")
    assert r.returncode == 0, r.stderr
    assert "2 skipped" in r.stderr and f"{len(full) - 2} done" in r.stderr
    assert read_jsonl(out / "results.jsonl") == full  # the torn line cut off and its input run again
    r = msvision_cli(*args, "--resume")
    assert f"0 done, 0 failed, {len(full)} skipped" in r.stderr


def test_globs_lists_and_files_expand_to_the_same_images(tmp_path, photo_folder, ulfd_dir):
    (photo_folder / "broken.jpg").unlink()
    listing = tmp_path / "list.txt"
    wanted = [photo_folder / "nested" / NESTED[0], photo_folder / PHOTOS[0]]
    listing.write_text("# photos\n" + "\n".join(map(str, wanted)) + "\n\n")
    r = msvision_cli("run", "face-detection", listing, "--model", ulfd_dir, "--threads", 1, "-q")
    assert r.returncode == 0 and r.stderr == ""
    assert [json.loads(line) for line in r.stdout.splitlines()] == api_records(
        wanted, ulfd_dir
    )  # stdout JSONL

    jsonl = tmp_path / "glob.jsonl"
    r = msvision_cli(
        "run", "face-detection", f"{photo_folder}/**/*.jpg", "--model", ulfd_dir, "--jsonl", jsonl, "-q"
    )
    assert r.returncode == 0, r.stderr
    assert [rec["path"] for rec in read_jsonl(jsonl)] == sorted(
        str(p) for p in expected_paths(photo_folder) if p.name != "broken.jpg"
    )
    # the same file given twice, and relative paths, run once
    r = msvision_cli(
        "run", "face-detection", PHOTOS[0], f"./{PHOTOS[0]}", "--model", ulfd_dir, "-q", cwd=photo_folder
    )
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 1


def test_image_task_writes_pngs_under_out_with_relative_paths(tmp_path, photo_folder):
    (photo_folder / "broken.jpg").unlink()
    for p in [*photo_folder.glob("*.jpg"), *photo_folder.glob("nested/*.jpg")]:  # small crops keep it quick
        Image.open(p).convert("RGB").crop((0, 0, 96, 80)).save(p)
    out = tmp_path / "clean"
    r = msvision_cli("run", "image-denoising", photo_folder, "-o", out, "--threads", 1)
    assert r.returncode == 0, r.stderr
    pipe = msvision.pipeline("image-denoising", threads=1)
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert written == sorted(
        [n.replace(".jpg", ".png") for n in PHOTOS] + [f"nested/{NESTED[0].replace('.jpg', '.png')}"]
    )
    for rel in written:
        source = photo_folder / rel.replace(".png", ".jpg")
        saved = np.asarray(Image.open(out / rel))[:, :, ::-1]  # PNG holds RGB; output_img is BGR
        np.testing.assert_array_equal(saved, pipe(str(source))["output_img"])
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    r = msvision_cli("run", "image-denoising", photo_folder, "-o", out, "--resume")
    assert r.returncode == 0 and f"{len(written)} skipped" in r.stderr
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.png")} == before


def test_usage_errors_exit_2(tmp_path, photo_folder, ulfd_dir):
    (tmp_path / "empty").mkdir()
    cases = [
        (("run", "no-such-task", photo_folder), "unknown task"),
        (("run", "face-detection", tmp_path / "missing"), "no such file or folder"),
        (("run", "face-detection", f"{tmp_path}/*.png"), "matches no images"),
        (("run", "face-detection", tmp_path / "empty"), "no images"),
        (("run", "image-denoising", photo_folder), "-o OUT is needed"),
        (("run", "face-detection", photo_folder, "--draw"), "-o OUT is needed"),
        (
            ("run", "face-detection", photo_folder, "--model", tmp_path / "nowhere"),
            "cannot load the face-detection model",
        ),
        (("run", "face-detection", photo_folder, "-q", "-v"), "not allowed with"),
        (("run", "face-detection", photo_folder, "--model", ulfd_dir, "--precision", "bf16"), "no bf16 mode"),
        (("run", "face-detection", photo_folder, "--precision", "fp16"), "invalid choice: 'fp16'"),
        (("run",), "the following arguments are required"),
    ]
    for args, message in cases:
        r = msvision_cli(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert message in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr
    r = msvision_cli()
    assert r.returncode == 2 and "msvision run TASK INPUT" in r.stdout


def test_verbose_prints_each_image_and_tracebacks(tmp_path, photo_folder, ulfd_dir):
    r = msvision_cli(
        "run", "face-detection", photo_folder, "--model", ulfd_dir, "-o", tmp_path / "o", "-v", "--keep-going"
    )
    assert r.returncode == 1
    assert "Traceback" in r.stderr and "ImageDecodeError" in r.stderr
    assert sum(line.endswith(": ok") for line in r.stderr.splitlines()) == len(PHOTOS) + len(NESTED)


def _run_on_a_terminal(*args):
    """Runs the CLI with stdout on a pseudo-terminal; returns (exit code, stderr)."""
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "msvision", *map(str, args)],
            stdout=follower,
            stderr=subprocess.PIPE,
            text=True,
        )
        os.close(follower)
        follower = None
        chunks = []
        while True:  # drain the terminal so the child never blocks on it
            try:
                data = os.read(leader, 4096)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        stderr = proc.stderr.read()
        return proc.wait(timeout=300), stderr
    finally:
        os.close(leader)
        if follower is not None:
            os.close(follower)


def test_progress_bar_only_on_a_terminal_and_not_with_quiet(tmp_path, photo_folder, ulfd_dir):
    (photo_folder / "broken.jpg").unlink()
    rc, stderr = _run_on_a_terminal(
        "run", "face-detection", photo_folder, "--model", ulfd_dir, "-o", tmp_path / "a"
    )
    assert rc == 0
    assert "5/5" in stderr and "img" in stderr  # tqdm's bar
    rc, stderr = _run_on_a_terminal(
        "run", "face-detection", photo_folder, "--model", ulfd_dir, "-o", tmp_path / "b", "-q"
    )
    assert rc == 0 and stderr == ""


def test_tasks_models_info(tmp_path, ulfd_dir):
    r = msvision_cli("tasks")
    assert r.returncode == 0
    from msvision.pipelines.builder import PIPELINES

    for task, kinds in PIPELINES.items():
        line = next(line for line in r.stdout.splitlines() if line.startswith(task + " "))
        assert all(kind in line for kind in kinds)
    assert "damo/cv_resnet101_face-detection_cvpr22papermogface" in r.stdout

    cache = tmp_path / "cache"
    shutil.copytree(ulfd_dir, cache / "models" / "damo" / "cv_manual_face-detection_ulfd")
    other = cache / "models" / "someone" / "cv_unknown___v1.0"  # a model msvision does not run
    other.mkdir(parents=True)
    (other / "configuration.json").write_text(
        json.dumps({"task": "image-captioning", "pipeline": {"type": "x"}})
    )
    hub = (
        cache / "models" / "damo--cv_tinynas_head-detection_damoyolo" / "snapshots" / "master"
    )  # modelscope-hub
    hub.mkdir(parents=True)
    config = {"task": "domain-specific-object-detection", "pipeline": {"type": "tinynas-detection"}}
    (hub / "configuration.json").write_text(json.dumps(config))
    r = msvision_cli("models", env={**os.environ, "MODELSCOPE_CACHE": str(cache)})
    assert r.returncode == 0
    rows = [line.split() for line in r.stdout.splitlines()[2:]]
    assert [row[:3] for row in rows] == [
        ["damo/cv_manual_face-detection_ulfd", "face-detection", "manual-face-detection-ulfd"],
        ["damo/cv_tinynas_head-detection_damoyolo", "domain-specific-object-detection", "tinynas-detection"],
    ]
    r = msvision_cli("models", env={**os.environ, "MODELSCOPE_CACHE": str(tmp_path / "empty")})
    assert r.returncode == 0 and "no model" in r.stdout

    r = msvision_cli("info")
    info = msvision.build_info()
    assert r.returncode == 0
    assert msvision.__version__ in r.stdout and info["onednn_version"] in r.stdout and info["isa"] in r.stdout


def test_draw_writes_annotated_images_under_out(tmp_path, photo_folder, ulfd_dir):
    (photo_folder / "broken.jpg").unlink()
    out = tmp_path / "drawn"
    r = msvision_cli("run", "face-detection", photo_folder, "--model", ulfd_dir, "-o", out, "--draw", "-q")
    assert r.returncode == 0, r.stderr
    records = {rec["path"]: rec for rec in read_jsonl(out / "results.jsonl")}
    for source in expected_paths(photo_folder)[1:]:
        drawn_path = out / source.relative_to(photo_folder)
        drawn = cv2.imread(str(drawn_path))
        expected = msvision.draw(str(source), records[str(source)])
        assert drawn.shape == expected.shape and (expected != cv2.imread(str(source))).any()
        np.testing.assert_array_equal(
            drawn, cv2.imdecode(cv2.imencode(".jpg", expected)[1], cv2.IMREAD_COLOR)
        )
