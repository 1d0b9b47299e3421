"""Dev-time training script for msvision's embedded default image-denoising model.

This script needs torch and ModelScope and is used ONLY at development time to (re)build the model
directory ``msvision/default_models/nafnet_denoise/`` that ships inside the package. It is never imported
at run time (msvision runs the network with its own C core; torch is not a run-time dependency).

What it does:

* builds ModelScope's own ``NAFNet`` class (``modelscope.models.cv.image_denoise.nafnet.NAFNet_arch``)
  in a small configuration, so the result loads through exactly the same code path as ModelScope's
  ``damo/cv_nafnet_image-denoise_sidd`` (``pipeline('image-denoising', model=<dir>)``);
* trains it on real photos bundled with scikit-image (RGB ones, and gray ones replicated to 3 channels),
  holding out ``astronaut.png``, ``chelsea.png`` and ``coffee.png``, with random crops, flips/rot90 and
  additive Gaussian noise of sigma ~ U[5, 55] (0..255 scale), ModelScope's ``PSNRLoss``, Adam with a cosine
  learning-rate schedule, fixed seeds and a wall-clock budget;
* evaluates PSNR of noisy vs denoised on the held-out photos at sigma 15/25/50 exactly as the ModelScope
  pipeline computes its output (``ToTensor`` -> model -> ``clamp(0, 1)`` -> ``(x * 255).astype(uint8)``);
* writes ``configuration.json``, ``pytorch_model.pt`` and ``EVAL.md`` into the model directory and
  ``msvision/data/noisy_sample.png`` (+ ``README.md``).

Usage (from the repository root)::

    OMP_NUM_THREADS=1 python3 msvision/default_models/train_denoiser.py --budget-min 20
"""

import argparse
import json
import math
import os
import sys
import time

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
PKG_DIR = os.path.dirname(HERE)
DEFAULT_OUT = os.path.join(HERE, "nafnet_denoise")
DEFAULT_DATA_OUT = os.path.join(PKG_DIR, "data")

# Real photographs (or real imaging data) bundled with scikit-image that are used for training.
TRAIN_RGB = [
    "motorcycle_left.png",
    "motorcycle_right.png",
    "rocket.jpg",
    "hubble_deep_field.jpg",
    "ihc.png",
    "retina.jpg",
]
TRAIN_GRAY = [
    "camera.png",
    "coins.png",
    "brick.png",
    "grass.png",
    "gravel.png",
    "moon.png",
    "page.png",
    "text.png",
    "cell.png",
    "clock_motion.png",
]
# Never trained on: evaluation only.
HELD_OUT = ["astronaut.png", "chelsea.png", "coffee.png"]
EVAL_SIGMAS = [15, 25, 50]
EVAL_SEED = 2024
SAMPLE_PHOTO = "astronaut.png"
SAMPLE_SIGMA = 25

NETWORK_G = {
    "img_channel": 3,
    "width": 16,
    "enc_blk_nums": [1, 1, 2],
    "middle_blk_num": 2,
    "dec_blk_nums": [1, 1, 1],
}


def skimage_data_dir():
    import skimage.data

    return os.path.dirname(os.path.abspath(skimage.data.__file__))


def load_rgb(name):
    """Load a scikit-image data photo as HxWx3 uint8 (gray replicated to 3 channels)."""
    img = Image.open(os.path.join(skimage_data_dir(), name))
    if img.mode == "L":
        arr = np.asarray(img)
        return np.repeat(arr[:, :, None], 3, axis=2)
    return np.asarray(img.convert("RGB"))


def make_noisy(clean_u8, sigma, photo_idx):
    """Deterministic noisy version of a uint8 photo: AWGN, clipped to 0..255 and quantised to uint8."""
    rng = np.random.default_rng([EVAL_SEED, photo_idx, sigma])
    noisy = clean_u8.astype(np.float64) + rng.normal(0.0, sigma, clean_u8.shape)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


def psnr_u8(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def denoise_like_pipeline(model, noisy_u8):
    """Run the model exactly as ModelScope's ImageDenoisePipeline does for an image < 1024 px per side."""
    import torch

    assert noisy_u8.shape[0] < 1024 and noisy_u8.shape[1] < 1024  # pipeline then runs one crop
    x = torch.from_numpy(np.ascontiguousarray(noisy_u8.transpose(2, 0, 1))).to(torch.float32).div(255)
    with torch.no_grad():
        out = model(x.unsqueeze(0)).clamp(0, 1)
    return (out.squeeze(0) * 255).permute(1, 2, 0).numpy().astype("uint8")


def conv_gflops(model, h=512, w=512):
    """Total conv FLOPs (2 * MACs) for one HxW RGB image."""
    import torch

    total = [0]

    def hook(mod, inp, out):
        k = mod.kernel_size[0] * mod.kernel_size[1] * (mod.in_channels // mod.groups)
        total[0] += 2 * out.numel() * k

    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        model(torch.zeros(1, 3, h, w))
    for handle in hs:
        handle.remove()
    return total[0] / 1e9


def evaluate(model):
    model.eval()
    rows = []
    for idx, name in enumerate(HELD_OUT):
        clean = load_rgb(name)
        for sigma in EVAL_SIGMAS:
            noisy = make_noisy(clean, sigma, idx)
            den = denoise_like_pipeline(model, noisy)
            pn, pd = psnr_u8(noisy, clean), psnr_u8(den, clean)
            rows.append((name, sigma, pn, pd, pd - pn))
    return rows


def format_table(rows):
    lines = [
        "| photo | sigma | PSNR noisy (dB) | PSNR denoised (dB) | gain (dB) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, sigma, pn, pd, g in rows:
        lines.append(f"| {name} | {sigma} | {pn:.2f} | {pd:.2f} | {g:+.2f} |")
    lines.append("")
    lines.append("| sigma | mean PSNR noisy (dB) | mean PSNR denoised (dB) | mean gain (dB) |")
    lines.append("|---:|---:|---:|---:|")
    for sigma in EVAL_SIGMAS:
        sel = [r for r in rows if r[1] == sigma]
        mn = sum(r[2] for r in sel) / len(sel)
        md = sum(r[3] for r in sel) / len(sel)
        mg = sum(r[4] for r in sel) / len(sel)
        lines.append(f"| {sigma} | {mn:.2f} | {md:.2f} | {mg:+.2f} |")
    return "\n".join(lines)


class CropSampler:
    """Random training crops with flips/rot90 (and RGB channel permutation) from in-memory photos."""

    def __init__(self, crop, seed):
        self.crop = crop
        self.rng = np.random.default_rng(seed)
        self.images = [(load_rgb(n), True) for n in TRAIN_RGB] + [(load_rgb(n), False) for n in TRAIN_GRAY]
        for (img, _), n in zip(self.images, TRAIN_RGB + TRAIN_GRAY):
            assert min(img.shape[:2]) >= crop, n

    def batch(self, bs):
        out = np.empty((bs, self.crop, self.crop, 3), np.uint8)
        for i in range(bs):
            img, is_rgb = self.images[self.rng.integers(len(self.images))]
            y = self.rng.integers(img.shape[0] - self.crop + 1)
            x = self.rng.integers(img.shape[1] - self.crop + 1)
            p = img[y : y + self.crop, x : x + self.crop]
            if self.rng.random() < 0.5:
                p = p[:, ::-1]
            p = np.rot90(p, self.rng.integers(4))
            if is_rgb:
                p = p[:, :, self.rng.permutation(3)]
            out[i] = p
        return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget-min", type=float, default=20.0, help="total wall-clock budget (minutes)")
    ap.add_argument("--iters", type=int, default=0, help="fixed iteration count (0: fit to the budget)")
    ap.add_argument("--crop", type=int, default=96)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--lr-min", type=float, default=1e-6)
    ap.add_argument("--grad-clip", type=float, default=0.01, help="max grad norm (as NAFNet's recipe)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=DEFAULT_OUT, help="model directory to write")
    ap.add_argument("--data-out", default=DEFAULT_DATA_OUT, help="where noisy_sample.png goes")
    args = ap.parse_args()

    t_start = time.time()
    import torch
    from modelscope.models.cv.image_denoise.nafnet.NAFNet_arch import NAFNet, PSNRLoss

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed + 1)

    model = NAFNet(**NETWORK_G)
    n_params = sum(p.numel() for p in model.parameters())
    gflops = conv_gflops(model)
    print(f"NAFNet {NETWORK_G}: {n_params} params, {gflops:.2f} conv GFLOP @512x512", flush=True)

    sampler = CropSampler(args.crop, args.seed)
    criterion = PSNRLoss()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.9))

    reserve_s = 90.0  # evaluation + saving
    train_budget = args.budget_min * 60.0 - (time.time() - t_start) - reserve_s
    total_iters = args.iters if args.iters > 0 else None
    warmup_probe = 20
    t_train = time.time()
    it = 0
    loss_avg = None
    model.train()
    while True:
        elapsed = time.time() - t_train
        if total_iters is None and it == warmup_probe:
            per_it = elapsed / it
            total_iters = max(it + 1, int(0.93 * train_budget / per_it))
            print(f"{per_it:.3f} s/iter -> {total_iters} iterations", flush=True)
        if total_iters is not None and it >= total_iters:
            break
        if elapsed > train_budget and args.iters <= 0:
            print(f"wall-clock budget reached at iteration {it}", flush=True)
            break
        # Cosine decay over total_iters. During the timing probe the horizon is not known yet in budget
        # mode, so the first `warmup_probe` iterations use an (effectively constant) 1e9 horizon in both
        # modes: `--iters N` then repeats a budget-fitted run of N iterations exactly.
        horizon = total_iters if total_iters is not None and it >= warmup_probe else 10**9
        lr = args.lr_min + 0.5 * (args.lr - args.lr_min) * (1 + math.cos(math.pi * it / horizon))
        for g in opt.param_groups:
            g["lr"] = lr

        clean = torch.from_numpy(sampler.batch(args.batch)).permute(0, 3, 1, 2).float().div(255)
        sigma = torch.empty(args.batch, 1, 1, 1).uniform_(5.0, 55.0, generator=gen) / 255.0
        noise = torch.randn(clean.shape, generator=gen) * sigma
        noisy = torch.round((clean + noise).clamp(0, 1) * 255) / 255  # quantised like a real uint8 photo

        loss = criterion(model(noisy), clean)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        opt.step()
        it += 1
        loss_avg = loss.item() if loss_avg is None else 0.98 * loss_avg + 0.02 * loss.item()
        if it % 100 == 0:
            print(
                f"iter {it}/{total_iters} lr {lr:.2e} loss(-PSNR dB) {loss_avg:.3f} "
                f"t {time.time() - t_train:.0f}s",
                flush=True,
            )
    train_s = time.time() - t_train
    print(f"trained {it} iterations in {train_s:.0f} s", flush=True)

    rows = evaluate(model)
    table = format_table(rows)
    print(table, flush=True)

    # --- model directory in ModelScope's layout
    os.makedirs(args.out, exist_ok=True)
    config = {
        "framework": "pytorch",
        "task": "image-denoising",
        "pipeline": {"type": "nafnet-image-denoise"},
        "model": {"type": "nafnet", "network_g": NETWORK_G},
    }
    with open(os.path.join(args.out, "configuration.json"), "w") as f:
        json.dump(config, f, indent=4)
        f.write("\n")
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    model_path = os.path.join(args.out, "pytorch_model.pt")
    torch.save({"params": state}, model_path)
    size = os.path.getsize(model_path)
    assert size < 2_000_000, size

    # --- noisy sample (held-out astronaut, sigma 25, same noise as the evaluation row)
    os.makedirs(args.data_out, exist_ok=True)
    idx = HELD_OUT.index(SAMPLE_PHOTO)
    sample = make_noisy(load_rgb(SAMPLE_PHOTO), SAMPLE_SIGMA, idx)
    Image.fromarray(sample, "RGB").save(os.path.join(args.data_out, "noisy_sample.png"))
    with open(os.path.join(args.data_out, "README.md"), "w") as f:
        f.write(
            "# msvision sample data\n\n"
            "## noisy_sample.png\n\n"
            "`astronaut.png` from scikit-image's bundled data (`skimage.data.astronaut()`): color "
            "photograph of the astronaut Eileen Collins, downloaded by scikit-image from the NASA Great "
            "Images database. A work of NASA (U.S. federal government): no known copyright restrictions, "
            "released into the **public domain**.\n\n"
            f"Additive white Gaussian noise with sigma {SAMPLE_SIGMA} (0..255 scale) was added with a "
            f"fixed seed (`numpy.random.default_rng([{EVAL_SEED}, {idx}, {SAMPLE_SIGMA}])`), then the "
            "result was rounded, clipped to 0..255 "
            "and stored as a 512x512 uint8 RGB PNG by `msvision/default_models/train_denoiser.py`. The "
            "astronaut photo is never used to train the embedded denoiser (it is held out for evaluation).\n"
        )

    total_s = time.time() - t_start
    cmd = "OMP_NUM_THREADS=1 python3 " + " ".join(
        [os.path.relpath(os.path.abspath(sys.argv[0]), os.getcwd())] + sys.argv[1:]
    )
    with open(os.path.join(args.out, "EVAL.md"), "w") as f:
        f.write(
            "# Embedded default denoiser: evaluation\n\n"
            "ModelScope's own `NAFNet` (`modelscope.models.cv.image_denoise.nafnet.NAFNet_arch`), "
            "configuration `network_g = "
            + json.dumps(NETWORK_G)
            + f"`: {n_params:,} parameters, {gflops:.2f} conv GFLOP for a 512x512 image, "
            f"`pytorch_model.pt` {size / 1e6:.2f} MB (fp32).\n\n"
            "Training: real photos bundled with scikit-image ("
            + ", ".join(TRAIN_RGB)
            + "; gray, replicated to RGB: "
            + ", ".join(TRAIN_GRAY)
            + f"), random {args.crop}x{args.crop} crops, flips/rot90/RGB channel permutation, additive "
            "Gaussian noise sigma ~ U[5, 55] (0..255 scale, noisy input rounded to uint8 levels), "
            f"ModelScope's `PSNRLoss`, Adam (lr {args.lr:g}, betas 0.9/0.9) with cosine decay to "
            f"{args.lr_min:g}, batch {args.batch}, seed {args.seed}, {it} iterations, "
            f"{train_s / 60:.1f} min of training ({total_s / 60:.1f} min total) on "
            f"{args.threads} CPU thread(s), torch {torch.__version__}.\n\n"
            "Evaluation: held-out photos (never trained on) astronaut.png, chelsea.png, coffee.png; "
            "Gaussian noise with a fixed seed, noisy input rounded, clipped to 0..255 and stored as uint8; "
            "denoised exactly like ModelScope's `image-denoising` pipeline "
            "(`ToTensor` -> model -> `clamp(0, 1)` -> `(x * 255).astype(uint8)`); PSNR on the 0..255 "
            "uint8 scale against the clean photo.\n\n"
            f"Command (from the repository root):\n\n```\n{cmd}\n```\n\n"
            + (
                ""
                if args.iters > 0
                else "The iteration count was fitted to the wall-clock budget by a timing probe; add "
                f"`--iters {it}` to repeat this exact run.\n\n"
            )
            + table
            + "\n"
        )
    print(f"wrote {args.out} ({size} bytes of weights) in {total_s:.0f} s total", flush=True)


if __name__ == "__main__":
    main()
