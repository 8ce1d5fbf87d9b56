"""Sliding-window sampling: overhead over bare patch forwards, and DDIM-k against DDPM-T.

Prints, from one run (ratios are the result; absolute times depend on the machine and its load):

1. overhead ratio = time of one sliding-window reverse step (window gathering, coordinate / anatomy crops,
   weighted accumulation, scheduler update) / sum of the bare network forwards of the same window batches,
   timed interleaved in the same run;
2. DDIM-k against DDPM-T on the same model, anatomy and seed: wall-time ratio, network evaluations, and
   with a real crop (--case/--region) the SSIM and HU-histogram distance of each to the real crop.

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
from meddiff.diffusion.sliding_window import SlidingWindowPlan
from meddiff.labels import BODY, REGIONS
from meddiff.models.network import MedDiffUNet

ARCHITECTURES = {
    "tiny": ModelConfig((16, 16, 16), (8, 16), (False, True), 1, 8, 4, 4, 2),
    # Demo scale (config/demo.yaml): patch 32^3, channels (8, 16, 32), attention at the last level.
    "demo": ModelConfig((32, 32, 32), (8, 16, 32), (False, False, True), 1, 8, 4, 8, 4),
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
    p.add_argument("--blend", choices=["gaussian", "constant"], default="gaussian", help="sampling.blend (the schema default is gaussian)")
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
    return random_model(ARCHITECTURES[args.architecture], args.seed, args.device)


def random_model(model: ModelConfig, seed: int = 0, device: str = "cpu") -> LoadedModel:
    """A randomly initialised network of ``model`` with position embedding, as a loaded model (T = 1000)."""
    torch.manual_seed(seed)
    net = MedDiffUNet(model, "embedding")
    with torch.no_grad():  # MONAI zero-initialises the output layer; a random one gives non-trivial outputs
        net.unet.out[2].conv.reset_parameters()
    return LoadedModel(network=net.to(device).eval(), num_train_timesteps=1000, schedule="cosine", info={})


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


def overhead(
    loaded: LoadedModel,
    anatomy: np.ndarray,
    *,
    region: str = "abdomen",
    overlap: float = 0.5,
    batch_size: int = 4,
    blend: str,
    timing_steps: int = 5,
    ddim_steps: int = 10,
    seed: int = 0,
    device: str = "cpu",
) -> dict:
    """Part 1: sliding-window step time over the bare forwards of the same window batches.

    Returns {"ratio", "step_s", "bare_s", "windows", "ratios"} (medians over ``timing_steps`` repeats)."""
    net, device = loaded.network, torch.device(device)
    patch = tuple(net.model_config.patch_size)
    plan = SlidingWindowPlan(anatomy.shape, patch, overlap, anatomy, REGIONS.index(region), device, blend=blend, precision="fp32")
    scheduler = make_sampling_scheduler("ddim", loaded.num_train_timesteps, loaded.schedule, ddim_steps, loaded.prediction)
    t = int(scheduler.timesteps[len(scheduler.timesteps) // 2])
    x = torch.randn((1, 1, *anatomy.shape), generator=torch.Generator().manual_seed(seed)).to(device)
    # The same window batches the step evaluates, built beforehand so only the forwards are timed.
    batches = [plan.window_batch(plan.pad(x), t, idx) for idx in plan.batches(batch_size)]

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
        eps = plan.eps(net, x, t, batch_size)
        scheduler.step(eps, t, x)
        sync()
        return time.perf_counter() - start

    bare(), step()  # warm-up
    bare_times, step_times = [], []
    for _ in range(timing_steps):  # interleaved, so machine load hits both alike
        bare_times.append(bare())
        step_times.append(step())
    ratios = [s / b for s, b in zip(step_times, bare_times)]
    return {
        "ratio": statistics.median(ratios),
        "step_s": statistics.median(step_times),
        "bare_s": statistics.median(bare_times),
        "windows": plan.num_windows,
        "ratios": ratios,
    }


def print_overhead(args, loaded, anatomy: np.ndarray) -> None:
    r = overhead(
        loaded, anatomy, region=args.region, overlap=args.overlap, batch_size=args.batch_size, blend=args.blend,
        timing_steps=args.timing_steps, ddim_steps=args.ddim_steps, seed=args.seed, device=args.device,
    )
    patch = tuple(loaded.network.model_config.patch_size)
    print(
        f"volume {anatomy.shape}, patch {patch}, overlap {args.overlap}, blend {args.blend}, "
        f"{r['windows']} windows in batches of {args.batch_size}"
    )
    print(f"  sliding-window step: median {r['step_s']:.3f} s; bare forwards of the same batches: median {r['bare_s']:.3f} s")
    print(
        f"  overhead ratio (step / bare forwards): median {r['ratio']:.3f} "
        f"(min {min(r['ratios']):.3f}, max {max(r['ratios']):.3f}, {len(r['ratios'])} repeats)"
    )


def compare(
    loaded: LoadedModel,
    anatomy: np.ndarray,
    real: np.ndarray | None,
    window: Window | None,
    *,
    region: str = "abdomen",
    ddim_steps: int = 10,
    overlap: float = 0.5,
    batch_size: int = 4,
    blend: str,
    seed: int = 0,
    device: str = "cpu",
) -> dict:
    """Part 2: DDIM-k against DDPM-T, same model, anatomy and seed.

    Returns {"T", "k", "ddim_s", "ddpm_s", "ssim_between"} and, with a real crop, per sampler
    "<sampler>_ssim" and "<sampler>_hist_hu" (SSIM and HU-histogram distance to it). SSIM, not MS-SSIM:
    DDPM-1000 is affordable on a CPU for about one 32^3 patch, where MS-SSIM fits only 2 scales and a
    negative coarse contrast term makes it 0 (measured on the demo model).
    """
    from meddiff.metrics.histogram import hu_histogram_distance
    from meddiff.metrics.image_quality import ssim

    T = loaded.num_train_timesteps
    runs = {}
    for sampler, steps in (("ddim", ddim_steps), ("ddpm", T)):  # MONAI's DDPM step cannot skip steps
        cfg = SamplingConfig(sampler=sampler, steps=steps, overlap=overlap, patch_batch_size=batch_size, blend=blend, precision="fp32")
        start = time.perf_counter()
        vol = sample_volume(loaded, anatomy, region, sampling=cfg, seed=seed, device=device)
        runs[sampler] = (vol, time.perf_counter() - start)
    (ddim, t_ddim), (ddpm, t_ddpm) = runs["ddim"], runs["ddpm"]
    out = {"T": T, "k": ddim_steps, "ddim_s": t_ddim, "ddpm_s": t_ddpm, "ssim_between": ssim(ddim, ddpm, 2.0)}
    if real is not None:
        if window is None:
            raise ValueError("a real crop needs its HU window (the case's meta.json 'window') for the HU distance")
        real_hu = unit_to_hu(real, window)
        for name, vol in (("ddim", ddim), ("ddpm", ddpm)):
            out[f"{name}_ssim"] = ssim(vol, real, 2.0)
            out[f"{name}_hist_hu"] = hu_histogram_distance(real_hu, unit_to_hu(vol, window))
    return out


def print_compare(args, loaded, anatomy, real, window) -> None:
    r = compare(
        loaded, anatomy, real, window, region=args.region, ddim_steps=args.ddim_steps, overlap=args.overlap,
        batch_size=args.batch_size, blend=args.blend, seed=args.seed, device=args.device,
    )
    print(f"DDIM-{r['k']} vs DDPM-{r['T']} (T = {r['T']}), same anatomy and seed {args.seed}:")
    print(
        f"  wall time: DDIM {r['ddim_s']:.1f} s, DDPM {r['ddpm_s']:.1f} s -> speed-up x{r['ddpm_s'] / r['ddim_s']:.1f} "
        f"(network-evaluation ratio x{r['T'] / r['k']:.1f})"
    )
    print(f"  SSIM(DDIM, DDPM) = {r['ssim_between']:.4f} (how close the two samplers' volumes are)")
    if args.model is None:
        print("  metric change vs the real crop: not meaningful with a random network (pass --model)")
    if real is None:
        print("  no real crop (--case): SSIM / HU-histogram distance to a reference not computed")
        return
    for name in ("ddim", "ddpm"):
        print(f"  {name.upper()}: SSIM to real {r[name + '_ssim']:.4f}, HU-histogram distance {r[name + '_hist_hu']:.1f} HU")
    print(
        f"  change DDIM - DDPM: SSIM {r['ddim_ssim'] - r['ddpm_ssim']:+.4f}, "
        f"HU-histogram distance {r['ddim_hist_hu'] - r['ddpm_hist_hu']:+.1f} HU"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    loaded = load_network(args)
    patch = tuple(loaded.network.model_config.patch_size)
    anatomy, real, window = inputs(args, patch)
    source = str(args.model) if args.model else f"random {args.architecture} network"
    print(f"model: {source}; device {args.device}; torch threads {torch.get_num_threads()}")
    print_overhead(args, loaded, anatomy)
    if not args.skip_compare:
        print_compare(args, loaded, anatomy, real, window)
    return 0


if __name__ == "__main__":
    sys.exit(main())
