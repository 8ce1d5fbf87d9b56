"""Sliding-window sampling: overhead over bare patch forwards, and DDIM-k against DDPM-T.

Prints, from one run (ratios are the result; absolute times depend on the machine and its load):

1. overhead ratio = time of one sliding-window reverse step (window gathering, coordinate / anatomy crops,
   weighted accumulation, scheduler update) / sum of the bare network forwards of the same window batches,
   timed interleaved in the same run;
2. DDIM-k against DDPM-T on the same model, anatomy and seed: wall-time ratio, network evaluations, and
   with a real crop (--case/--region) the MS-SSIM and HU-histogram distance of each to the real crop.

Without --model a random network is built (--architecture tiny|demo), so the timings still mean something
but the metric comparison does not (say so in the output).

    python benchmarks/sliding_window_sampling.py                       # tiny random net, ~1-3 min on CPU
    python benchmarks/sliding_window_sampling.py --architecture demo --volume 64 48 60 --overlap 0.25 --skip-compare
    python benchmarks/sliding_window_sampling.py --model results/demo/models/full --case results/demo/cache/x/case1 --region chest
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from meddiff.config import ModelConfig, SamplingConfig, Window
from meddiff.data.intensity import unit_to_hu
from meddiff.diffusion.checkpoint import LoadedModel, load_model
from meddiff.diffusion.samplers import make_sampling_scheduler, sample_volume
from meddiff.diffusion.sliding_window import DEFAULT_BLEND, SlidingWindowPlan
from meddiff.labels import BODY, REGIONS
from meddiff.models.network import MedDiffUNet

ARCHITECTURES = {
    "tiny": ModelConfig((16, 16, 16), (8, 16), (False, True), 1, 8, 4, 4, 2),
    # Demo scale (config/demo.yaml): patch 32^3, channels (16, 32, 64), attention at the last level.
    "demo": ModelConfig((32, 32, 32), (16, 32, 64), (False, False, True), 1, 16, 8, 8, 4),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", type=Path, help="trained model folder (default: a random network)")
    p.add_argument(
        "--architecture", choices=sorted(ARCHITECTURES), default="tiny", help="random network size (without --model)"
    )
    p.add_argument("--case", type=Path, help="training-cache folder of a real crop (anatomy + reference image)")
    p.add_argument("--region", choices=REGIONS, default="abdomen")
    p.add_argument(
        "--volume",
        type=int,
        nargs=3,
        metavar=("Z", "Y", "X"),
        help="volume size (default: one and a half patches along x); a real crop is centre-cropped to it",
    )
    p.add_argument("--overlap", type=float, default=0.5)
    p.add_argument("--batch-size", type=int, default=4, help="windows per network call")
    p.add_argument("--blend", choices=["gaussian", "constant"], default=DEFAULT_BLEND)
    p.add_argument("--timing-steps", type=int, default=5, help="repeats of the overhead measurement")
    p.add_argument("--ddim-steps", type=int, default=10)
    p.add_argument("--skip-compare", action="store_true", help="only the overhead measurement")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    return p.parse_args(argv)


def load_network(args) -> LoadedModel:
    """The model to benchmark: a trained model folder, or a randomly initialised network."""
    if args.model is not None:
        return load_model(args.model, args.device)
    torch.manual_seed(args.seed)
    net = MedDiffUNet(ARCHITECTURES[args.architecture], "embedding")
    with torch.no_grad():  # MONAI zero-initialises the output layer; a random one gives non-trivial outputs
        net.unet.out[2].conv.reset_parameters()
    return LoadedModel(network=net.to(args.device).eval(), num_train_timesteps=1000, schedule="cosine", info={})


def centre_crop(a: np.ndarray, shape) -> np.ndarray:
    starts = [max(0, (n - s) // 2) for n, s in zip(a.shape, shape)]
    return np.asarray(a[tuple(slice(st, st + s) for st, s in zip(starts, shape))])


def inputs(args, patch) -> tuple[np.ndarray, np.ndarray | None, Window | None]:
    """(anatomy (Z, Y, X), real image in [-1, 1] or None, its window or None)."""
    shape = tuple(args.volume) if args.volume else (patch[0], patch[1], patch[2] * 3 // 2)
    if args.case is not None:
        from meddiff.data.preprocess import load_crop

        image, label, meta = load_crop(args.case, args.region)
        return centre_crop(label, shape), centre_crop(image, shape), Window(**meta["window"])
    anatomy = np.zeros(shape, np.uint8)  # a body block on background, as a stand-in anatomy
    anatomy[tuple(slice(n // 8, n - n // 8) for n in shape)] = BODY
    return anatomy, None, None


def overhead(args, loaded, anatomy: np.ndarray) -> None:
    """Part 1: sliding-window step time over the bare forwards of the same window batches."""
    net, device = loaded.network, torch.device(args.device)
    patch = tuple(net.model_config.patch_size)
    plan = SlidingWindowPlan(
        anatomy.shape, patch, args.overlap, anatomy, REGIONS.index(args.region), device, blend=args.blend
    )
    scheduler = make_sampling_scheduler(
        "ddim", loaded.num_train_timesteps, loaded.schedule, args.ddim_steps, loaded.prediction
    )
    t = int(scheduler.timesteps[len(scheduler.timesteps) // 2])
    x = torch.randn((1, 1, *anatomy.shape), generator=torch.Generator().manual_seed(args.seed)).to(device)
    # The same window batches the step evaluates, built beforehand so only the forwards are timed.
    batches = [plan.window_batch(plan.pad(x), t, idx) for idx in plan.batches(args.batch_size)]

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def bare() -> float:
        sync()
        start = time.perf_counter()
        with torch.no_grad():
            for b in batches:
                net(*b)
        sync()
        return time.perf_counter() - start

    def step() -> float:
        sync()
        start = time.perf_counter()
        eps = plan.eps(net, x, t, args.batch_size)
        scheduler.step(eps, t, x)
        sync()
        return time.perf_counter() - start

    bare(), step()  # warm-up
    bare_times, step_times = [], []
    for _ in range(args.timing_steps):  # interleaved, so machine load hits both alike
        bare_times.append(bare())
        step_times.append(step())
    ratios = [s / b for s, b in zip(step_times, bare_times)]
    print(
        f"volume {anatomy.shape}, patch {patch}, overlap {args.overlap}, blend {args.blend}, "
        f"{plan.num_windows} windows in batches of {args.batch_size}"
    )
    print(
        f"  sliding-window step: median {statistics.median(step_times):.3f} s; "
        f"bare forwards of the same batches: median {statistics.median(bare_times):.3f} s"
    )
    print(
        f"  overhead ratio (step / bare forwards): median {statistics.median(ratios):.3f} "
        f"(min {min(ratios):.3f}, max {max(ratios):.3f}, {len(ratios)} repeats)"
    )


def compare(args, loaded, anatomy, real, window) -> None:
    """Part 2: DDIM-k against DDPM-T, same model, anatomy and seed."""
    T = loaded.num_train_timesteps
    ddpm_steps = T  # MONAI's DDPM step cannot skip steps
    runs = {}
    for sampler, steps in (("ddim", args.ddim_steps), ("ddpm", ddpm_steps)):
        cfg = SamplingConfig(sampler=sampler, steps=steps, overlap=args.overlap, patch_batch_size=args.batch_size, blend=args.blend)
        start = time.perf_counter()
        vol = sample_volume(
            loaded, anatomy, args.region, sampling=cfg, seed=args.seed, device=args.device
        )
        runs[sampler] = (vol, time.perf_counter() - start, steps)
    (ddim, t_ddim, k), (ddpm, t_ddpm, _) = runs["ddim"], runs["ddpm"]
    print(f"DDIM-{k} vs DDPM-{ddpm_steps} (T = {T}), same anatomy and seed {args.seed}:")
    print(
        f"  wall time: DDIM {t_ddim:.1f} s, DDPM {t_ddpm:.1f} s -> speed-up x{t_ddpm / t_ddim:.1f} "
        f"(network-evaluation ratio x{ddpm_steps / k:.1f})"
    )
    try:
        from meddiff.metrics.histogram import hu_histogram_distance
        from meddiff.metrics.image_quality import ms_ssim
    except ImportError as err:  # metrics are written by another part of the project
        print(f"  metrics unavailable ({err})")
        return
    print(f"  MS-SSIM(DDIM, DDPM) = {ms_ssim(ddim, ddpm, 2.0):.4f} (how close the two samplers' volumes are)")
    if args.model is None:
        print("  metric change vs the real crop: not meaningful with a random network (pass --model)")
    if real is None:
        print("  no real crop (--case): MS-SSIM / HU-histogram distance to a reference not computed")
        return
    win = window or Window(0.0, 2.0)
    real_hu = unit_to_hu(real, win)
    for name, vol in (("DDIM", ddim), ("DDPM", ddpm)):
        print(
            f"  {name}: MS-SSIM to real {ms_ssim(vol, real, 2.0):.4f}, "
            f"HU-histogram distance {hu_histogram_distance(real_hu, unit_to_hu(vol, win)):.1f} HU"
        )
    d_ssim = ms_ssim(ddim, real, 2.0) - ms_ssim(ddpm, real, 2.0)
    d_hist = hu_histogram_distance(real_hu, unit_to_hu(ddim, win)) - hu_histogram_distance(
        real_hu, unit_to_hu(ddpm, win)
    )
    print(f"  change DDIM - DDPM: MS-SSIM {d_ssim:+.4f}, HU-histogram distance {d_hist:+.1f} HU")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    loaded = load_network(args)
    patch = tuple(loaded.network.model_config.patch_size)
    anatomy, real, window = inputs(args, patch)
    source = str(args.model) if args.model else f"random {args.architecture} network"
    print(f"model: {source}; device {args.device}; torch threads {torch.get_num_threads()}")
    overhead(args, loaded, anatomy)
    if not args.skip_compare:
        compare(args, loaded, anatomy, real, window)
    return 0


if __name__ == "__main__":
    sys.exit(main())
