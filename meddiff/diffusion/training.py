"""Pre-training loop of the diffusion foundation model (paper 3.2, eq. 3; 4.1.2).

ε-prediction (or v, ``diffusion.prediction``) with an L1 loss, timesteps uniform in [0, T), Adam, batch size 1
with 4 gradient accumulation steps at paper scale (batch 2 on CPU, where batch 1 takes PyTorch's slow
convolution path), optional EMA, fp32 or bf16 autocast chosen by measurement (:mod:`meddiff.diffusion.precision`).
Everything random is a function of (seed, step):

* the data of micro-batch m of step s (:mod:`meddiff.diffusion.training_data`),
* the noise ε and timesteps t, drawn from a ``torch.Generator`` seeded with (seed, step, micro, rank),

so a run killed at any point and resumed from ``<out>/last`` ends with bit-identical weights to an
uninterrupted run (on the same device and thread count). Checkpoints hold network, EMA, optimizer, step
and RNG states (:mod:`meddiff.diffusion.checkpoint`).

Distributed: under torchrun (WORLD_SIZE > 1) the network is wrapped in DDP, each rank reads disjoint items,
gradients are all-reduced on the last micro-batch only, and rank 0 writes checkpoints, the loss log and the
model folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.profiler import record_function
from torch.utils.data import DataLoader
from tqdm import tqdm

from meddiff.atomic import atomic_dir, atomic_path
from meddiff.config import DiffusionConfig, ModelConfig, TrainingConfig, Variant
from meddiff.diffusion.checkpoint import (
    find_training_state,
    load_model,
    load_training_state,
    restore_rng_states,
    save_model,
    save_training_state,
    training_state_step,
)
from meddiff.diffusion.distributed import DistributedContext, distributed_context
from meddiff.diffusion.precision import PrecisionChoice, autocast, choose_precision, conv_screen, training_step_fn
from meddiff.diffusion.schedule import make_scheduler, training_target
from meddiff.diffusion.training_data import CONDITIONS, MultilevelTrainingDataset, StepBatchSampler
from meddiff.diffusion.training_log import LossLog, training_summary
from meddiff.errors import ConfigError, WeightsMissingError
from meddiff.labels import NULL_LABEL, REGIONS
from meddiff.models.controlnet import ControlledMedDiff
from meddiff.models.mask_concat import MaskConcatUNet
from meddiff.models.network import MedDiffUNet
from meddiff.models.position_encoding import crop_coordinates

logger = logging.getLogger(__name__)


def noise_generator(seed: int, step: int, micro: int, rank: int) -> torch.Generator:
    """CPU generator for the ε and t of one micro-batch, a pure function of its position in training."""
    derived = int(np.random.SeedSequence([seed, step, micro, rank]).generate_state(1, dtype=np.uint64)[0])
    return torch.Generator(device="cpu").manual_seed(derived & 0x7FFF_FFFF_FFFF_FFFF)


def make_ema(network: MedDiffUNet, decay: float) -> AveragedModel | None:
    """Exponential moving average of the weights (None when ``decay`` is 0)."""
    if decay <= 0:
        return None
    return AveragedModel(network, multi_avg_fn=get_ema_multi_avg_fn(decay))


def diffusion_loss(
    network: torch.nn.Module,
    scheduler,
    batch: dict[str, torch.Tensor],
    generator: torch.Generator,
    device: torch.device,
    precision: str,
) -> torch.Tensor:
    """L1 form of eq. 3: |ε - ε_θ(x_t, t, p_e, c_r, c_a)| averaged over voxels, t ~ U{0..T-1} (the target is v
    instead of ε when the scheduler's prediction type says so, :func:`training_target`).

    Args:
        batch: x0 (B, 1, D, H, W), anatomy (B, D, H, W), coords (B, 3, D, H, W), region (B,) and, for a
            ControlNet (eq. 4), control (B, Cc, D, H, W).
        generator: draws ε (B, 1, D, H, W) and t (B,) on the CPU, so they do not depend on the device.
        precision: "fp32" or "bf16" (autocast).
    """
    with record_function("noise"):
        x0 = batch["x0"].to(device, non_blocking=True)
        noise = torch.randn(x0.shape, generator=generator).to(device)
        timesteps = torch.randint(0, scheduler.num_train_timesteps, (x0.shape[0],), generator=generator).to(device)
        x_t = scheduler.add_noise(original_samples=x0, noise=noise, timesteps=timesteps)
    control = {"control": batch["control"].to(device, non_blocking=True)} if "control" in batch else {}
    with autocast(precision, device):
        output = network(
            x_t,
            timesteps,
            batch["anatomy"].to(device, non_blocking=True),
            batch["region"].to(device, non_blocking=True),
            batch["coords"].to(device, non_blocking=True),
            **control,
        )
    return F.l1_loss(output.float(), training_target(scheduler, x0, noise, timesteps))


def finished_steps(model_dir: Path) -> int | None:
    """Steps recorded in a finished model folder's training.json (None when there is no finished model)."""
    info = model_dir / "training.json"
    if not (model_dir / "weights.pt").is_file() or not info.is_file():
        return None
    try:
        return int(json.loads(info.read_text())["steps"])
    except (ValueError, KeyError):
        return None


def train(
    manifest: Path,
    out_dir: Path,
    *,
    model: ModelConfig,
    diffusion: DiffusionConfig,
    training: TrainingConfig,
    variant: Variant,
    seed: int,
    device: str,
    continue_from: Path | None = None,
    precision: PrecisionChoice | None = None,
) -> Path:
    """Pre-train one variant (Table 3 row) on the manifest's train crops; return ``out_dir / "model"``.

    Args:
        manifest: ``manifest.csv`` of the training cache (its ``split == "train"`` rows are used).
        out_dir: run folder; gets ``last/`` (resume checkpoint), ``loss.csv``, ``model/`` and, when
            tensorboard is installed, ``tensorboard/``.
        model, diffusion, training: config sections; ``variant`` picks multilevel inputs and position mode.
        seed: seeds the network initialisation (torch's global RNG), the data and the noise.
        device: "auto" (CUDA if available, else CPU), "cpu", "cuda", "cuda:1", ...
        continue_from: a finished run folder of the same variant (e.g. its Table 3 run); a fresh ``out_dir``
            starts from its final checkpoint and loss log (:func:`start_from_run`), so training it to
            ``training.steps`` gives the weights of one uninterrupted run of that many steps.
        precision: the resolved ``training.precision`` (from ``meddiff probe-precision``); None: resolved here
            (``auto`` probes the network first). A resumed run keeps the precision of its checkpoint.

    Resumes from ``out_dir/last`` when present ("resuming from step N" in the log); returns at once when
    ``out_dir/model`` already holds ``training.steps`` steps. Under torchrun (WORLD_SIZE > 1) every process
    calls this function; rank 0 writes the outputs.
    """
    out_dir = Path(out_dir)
    model_dir = out_dir / "model"
    done = finished_steps(model_dir)
    if done is not None and done >= training.steps:
        logger.info("%s already holds %d trained steps; nothing to do", model_dir, done)
        return model_dir
    with distributed_context(device) as ctx:
        if continue_from is not None:
            if ctx.is_main:
                start_from_run(Path(continue_from), out_dir, training.steps)
            ctx.barrier()
        run = _TrainingRun(manifest, out_dir, model, diffusion, training, variant, seed, ctx, precision)
        run.run()
    return model_dir


STARTS = ("foundation", "scratch", "mask_concat")


@dataclasses.dataclass(frozen=True)
class FineTuning:
    """ControlNet fine-tuning (paper 3.3, eq. 4) of a foundation model for one task condition.

    Attributes:
        foundation: the foundation model folder (frozen; its weights initialise the ControlNet's copy).
        condition: the task condition c_t, one of :data:`meddiff.diffusion.training_data.CONDITIONS`.
        thick_factor: thin slices per thick slice of the "sr" condition (None for "lesion").
        start: "foundation" (ControlNet on the frozen foundation: fine-tuning), or one of Table 8's models trained
            from scratch on the task data with the foundation's architecture: "scratch" (the same network and
            ControlNet, random init, all trained), "mask_concat" (the Med-DDPM-style baseline,
            :class:`meddiff.models.mask_concat.MaskConcatUNet`).

    The "sr" ControlNet trains without the anatomy map (always the null label): at inference only the thick
    CT is known, not the anatomy of the thin one.
    """

    foundation: Path
    condition: str
    thick_factor: int | None
    start: str = "foundation"

    @property
    def condition_dropout(self) -> float | None:
        """1 (anatomy always dropped) for "sr"; None: ``training.condition_dropout``."""
        return 1.0 if self.condition == "sr" else None


def finetune(
    manifest: Path,
    out_dir: Path,
    *,
    tuning: FineTuning,
    training: TrainingConfig,
    seed: int,
    device: str,
    precision: PrecisionChoice | None = None,
) -> Path:
    """Fine-tune a ControlNet on the foundation model of ``tuning``; return ``out_dir / "model"``.

    The same loop, checkpoints and resume guarantee as :func:`train` (``training`` gives steps, lr, batch,
    EMA, ...), on patch-level inputs (the condition lives at the image's own resolution) of the manifest's train
    crops, with the foundation network frozen: only the ControlNet is optimised and checkpointed. The model
    folder holds both (it loads like any model folder, :func:`meddiff.diffusion.checkpoint.load_model`).
    """
    if tuning.condition not in CONDITIONS:
        raise ConfigError(f"unknown fine-tuning condition {tuning.condition!r}; expected one of {CONDITIONS}")
    if tuning.start not in STARTS:
        raise ConfigError(f"unknown start {tuning.start!r}; expected one of {STARTS}")
    out_dir = Path(out_dir)
    done = finished_steps(out_dir / "model")
    if done is not None and done >= training.steps:
        logger.info("%s already holds %d trained steps; nothing to do", out_dir / "model", done)
        return out_dir / "model"
    with distributed_context(device) as ctx:
        foundation = load_model(tuning.foundation, ctx.device)
        base = foundation.network
        diffusion = DiffusionConfig(foundation.num_train_timesteps, foundation.schedule, foundation.prediction)
        variant = Variant(name=f"{tuning.start}_{tuning.condition}", label=f"{tuning.start} ({tuning.condition})",
                          multilevel=False, position=base.position)  # fmt: skip
        run = _TrainingRun(manifest, out_dir, base.model_config, diffusion, training, variant, seed, ctx, precision,
                           tuning=tuning, base=base)  # fmt: skip
        run.run()
    return out_dir / "model"


def start_from_run(source: Path, out_dir: Path, steps: int) -> None:
    """Seed a fresh run folder with the final checkpoint (``last/``) and ``loss.csv`` of a finished run.

    Nothing is copied when ``out_dir`` already has a checkpoint (it is then resumed as usual). The copy is
    atomic: a killed copy leaves no ``last/`` behind.

    Raises:
        WeightsMissingError: ``source`` has no finished checkpoint.
        ConfigError: its checkpoint is already past ``steps``.
    """
    if find_training_state(out_dir / "last") is not None:
        return
    done = training_state_step(source / "last")
    if done is None or finished_steps(source / "model") != done:
        raise WeightsMissingError(f"{source}: no finished training run to continue from; train that variant first")
    if done > steps:
        raise ConfigError(f"{source} already holds {done} steps, more than the {steps} asked for")
    found = find_training_state(source / "last")
    if (source / "loss.csv").is_file():
        with atomic_path(out_dir / "loss.csv") as tmp:
            shutil.copyfile(source / "loss.csv", tmp)
    with atomic_dir(out_dir / "last") as tmp:
        shutil.copytree(found, tmp, dirs_exist_ok=True)
    logger.info("continuing %s (step %d) in %s", source, done, out_dir)


class _TrainingRun:
    """State of one training process; :meth:`run` is the loop (split out of :func:`train` for readability)."""

    def __init__(self, manifest, out_dir, model, diffusion, training, variant, seed, ctx: DistributedContext, precision,
                 tuning: FineTuning | None = None, base: MedDiffUNet | None = None):  # fmt: skip
        self.manifest, self.out_dir = Path(manifest), Path(out_dir)
        self.model_cfg, self.diffusion, self.training, self.variant = model, diffusion, training, variant
        self.seed, self.ctx, self.tuning = seed, ctx, tuning
        torch.manual_seed(seed)
        if tuning is None:
            self.network = MedDiffUNet(model, variant.position).to(ctx.device)
        elif tuning.start == "foundation":
            self.network = ControlledMedDiff(base, control_channels=1).to(ctx.device)
        elif tuning.start == "scratch":
            fresh = MedDiffUNet(model, variant.position)
            self.network = ControlledMedDiff(fresh, control_channels=1, frozen=False).to(ctx.device)
        else:
            self.network = MaskConcatUNet(model, variant.position, control_channels=1).to(ctx.device)
        # what is optimised, averaged and checkpointed: the whole network, or the ControlNet alone
        frozen = isinstance(self.network, ControlledMedDiff) and self.network.frozen
        self.trained = self.network.trainable() if frozen else self.network
        self.ema = make_ema(self.trained, training.ema_decay)
        self.optimizer = torch.optim.Adam(self.trained.parameters(), lr=training.lr)
        self.scheduler = make_scheduler(diffusion.num_train_timesteps, diffusion.schedule, diffusion.prediction)
        self.architecture = json.dumps(self.network.architecture(), sort_keys=True)
        self.step, self.elapsed_before = 0, 0.0
        self.window_sum, self.window_steps = 0.0, 0
        self.data_wait_s, self.loop_s, self.session_steps = 0.0, 0.0, 0
        self.precision: PrecisionChoice | None = None
        self._resume()
        self.precision = self._resolve_precision(precision)

    # ---------------------------------------------------------------------------------------------- resume

    def _resume(self) -> None:
        state = load_training_state(self.out_dir / "last")
        if state is None:
            return
        if state.extra.get("architecture") != self.architecture:
            raise ConfigError(
                f"{self.out_dir / 'last'}: checkpoint was trained with a different architecture/position mode; "
                "delete the folder to start over"
            )
        if (state.ema is None) != (self.ema is None):
            raise ConfigError(f"{self.out_dir / 'last'}: checkpoint and config disagree on EMA (training.ema_decay)")
        self.trained.load_state_dict(state.network)
        self.optimizer.load_state_dict(state.optimizer)
        if self.ema is not None:
            self.ema.load_state_dict(state.ema)
        restore_rng_states(state.rng)
        self.step, self.elapsed_before = state.step, state.elapsed_s
        self.window_sum = float(state.extra.get("window_sum", 0.0))
        self.window_steps = int(state.extra.get("window_steps", 0))
        if "precision" in state.extra:
            self.precision = PrecisionChoice.from_dict(json.loads(state.extra["precision"]))
        if self.ctx.is_main:
            logger.info("resuming from step %d (%s)", self.step, self.out_dir / "last")

    def _resolve_precision(self, given: PrecisionChoice | None) -> PrecisionChoice:
        """The checkpoint's precision on resume (bit-exact continuation), else ``given``, else a probe now."""
        if self.precision is not None:
            if given is not None and given.chosen != self.precision.chosen:
                logger.warning(
                    "keeping the checkpoint's precision %s (the probe now says %s)", self.precision.chosen, given.chosen
                )
            return self.precision
        if given is not None:
            return given
        return probe_training_precision(
            self.network, self.scheduler, self.training.precision, self.training.batch_size, self.ctx.device
        )

    # ------------------------------------------------------------------------------------------------ loop

    def _loader(self) -> DataLoader:
        t = self.training
        dataset = MultilevelTrainingDataset(
            self.manifest,
            patch_size=self.model_cfg.patch_size,
            multilevel=self.variant.multilevel,
            level_probabilities=t.level_probabilities,
            condition_dropout=t.condition_dropout if self.tuning is None or self.tuning.condition_dropout is None
            else self.tuning.condition_dropout,
            seed=self.seed,
            condition=None if self.tuning is None else self.tuning.condition,
            thick_factor=None if self.tuning is None else self.tuning.thick_factor,
        )
        sampler = StepBatchSampler(
            self.step,
            t.steps,
            grad_accumulation=t.grad_accumulation,
            batch_size=t.batch_size,
            world_size=self.ctx.world_size,
            rank=self.ctx.rank,
        )
        return DataLoader(
            dataset,
            batch_sampler=sampler,
            num_workers=t.num_workers,
            persistent_workers=t.num_workers > 0,
            pin_memory=self.ctx.device.type == "cuda",
        )

    def run(self) -> None:
        t, ctx = self.training, self.ctx
        trainee = self.network
        if ctx.distributed:
            device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
            trainee = DistributedDataParallel(self.network, device_ids=device_ids)
        log = LossLog(self.out_dir / "loss.csv", self.step, self.out_dir / "tensorboard") if ctx.is_main else None
        batches = iter(self._loader())
        session_start = window_start = time.perf_counter()
        window_first_step = self.step
        progress = tqdm(
            total=t.steps, initial=self.step, desc=f"train {self.variant.name}", disable=None if ctx.is_main else True
        )
        trainee.train()
        try:
            while self.step < t.steps:
                started = time.perf_counter()
                loss = self._optimizer_step(trainee, batches)
                self.step += 1
                self.window_sum += loss
                self.window_steps += 1
                progress.update(1)
                progress.set_postfix(loss=f"{loss:.4f}", refresh=False)
                if self.step % t.log_every == 0 or self.step == t.steps:
                    with record_function("log"):
                        now = time.perf_counter()
                        rate = (self.step - window_first_step) / max(now - window_start, 1e-9)
                        self._log_row(log, rate, self.elapsed_before + now - session_start)
                        window_start, window_first_step = now, self.step
                if self.step % t.checkpoint_every == 0 or self.step == t.steps:
                    with record_function("checkpoint"):
                        self._checkpoint(self.elapsed_before + time.perf_counter() - session_start)
                self._time_step(time.perf_counter() - started)
        finally:
            progress.close()
            if log is not None:
                log.close()
        self._save_model()

    def _optimizer_step(self, trainee: torch.nn.Module, batches) -> float:
        """One optimizer step over ``grad_accumulation`` micro-batches; returns the mean micro-batch loss."""
        t = self.training
        self.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for micro in range(t.grad_accumulation):
            waited = time.perf_counter()
            with record_function("data"):
                batch = next(batches)
            self.data_wait_s += time.perf_counter() - waited
            generator = noise_generator(self.seed, self.step, micro, self.ctx.rank)
            last_micro = micro == t.grad_accumulation - 1
            sync = contextlib.nullcontext() if last_micro or not self.ctx.distributed else trainee.no_sync()
            with sync:
                loss = diffusion_loss(trainee, self.scheduler, batch, generator, self.ctx.device, self.precision.chosen)
                (loss / t.grad_accumulation).backward()
            total += loss.item()
        self.optimizer.step()
        if self.ema is not None:
            with record_function("ema"):
                self.ema.update_parameters(self.trained)
        return total / t.grad_accumulation

    def _log_row(self, log: LossLog | None, rate: float, elapsed: float) -> None:
        mean_loss = self.ctx.mean(self.window_sum / max(self.window_steps, 1))
        self.window_sum, self.window_steps = 0.0, 0
        if log is None:
            return
        lr = self.optimizer.param_groups[0]["lr"]
        log.append(self.step, mean_loss, lr, rate, elapsed)
        logger.info(
            "step %d/%d  loss %.4f  lr %.2e  %.2f it/s (%.1f samples/s)  data wait %.1f%%",
            self.step,
            self.training.steps,
            mean_loss,
            lr,
            rate,
            rate * self.samples_per_step,
            100 * self.data_wait_fraction,
        )

    @property
    def samples_per_step(self) -> int:
        """Training samples one optimizer step sees (over all processes)."""
        return self.training.batch_size * self.training.grad_accumulation * self.ctx.world_size

    def _time_step(self, seconds: float) -> None:
        """Count one whole iteration (data, step, EMA, log, checkpoint); a session's first one is warm-up
        (kernel creation) and only logged, so :attr:`seconds_per_step` measures the steady state."""
        self.session_steps += 1
        if self.session_steps == 1:
            logger.debug("first step of the session (warm-up): %.3f s", seconds)
            self.data_wait_s = 0.0
            return
        self.loop_s += seconds

    @property
    def seconds_per_step(self) -> float:
        """Mean wall time of this session's optimizer steps after the first, checkpoints and logging included."""
        return self.loop_s / (self.session_steps - 1) if self.session_steps > 1 else float("nan")

    @property
    def data_wait_fraction(self) -> float:
        """Share of :attr:`seconds_per_step` spent waiting for the next batch."""
        return self.data_wait_s / self.loop_s if self.loop_s > 0 else 0.0

    def _checkpoint(self, elapsed: float) -> None:
        self.ctx.barrier()
        if self.ctx.is_main:
            save_training_state(
                self.out_dir / "last",
                network=self.trained,
                ema=self.ema,
                optimizer=self.optimizer,
                step=self.step,
                elapsed_s=elapsed,
                extra={
                    "architecture": self.architecture,
                    "window_sum": self.window_sum,
                    "window_steps": self.window_steps,
                    "precision": json.dumps(dataclasses.asdict(self.precision)),
                },
            )
        self.ctx.barrier()

    def _save_model(self) -> None:
        if self.ctx.is_main:
            weights = self.network if self.ema is None else self.ema.module
            if self.trained is not self.network and self.ema is not None:  # the ControlNet's EMA on the frozen base
                weights = ControlledMedDiff(self.network.base, self.network.control_channels, self.ema.module)
            info = {
                "variant": dataclasses.asdict(self.variant),
                "steps": self.step,
                "samples": self.step * self.samples_per_step,
                "seed": self.seed,
                "precision": dataclasses.asdict(self.precision),
                "seconds_per_step": round(self.seconds_per_step, 4),
                "data_wait_fraction": round(self.data_wait_fraction, 4),
                "ema": self.ema is not None,
                "world_size": self.ctx.world_size,
                "manifest": str(self.manifest),
                "model": dataclasses.asdict(self.model_cfg),
                "diffusion": dataclasses.asdict(self.diffusion),
                "training": dataclasses.asdict(self.training),
                "summary": training_summary(self.out_dir),
            }
            if self.tuning is not None:
                info["finetune"] = {**dataclasses.asdict(self.tuning), "foundation": str(self.tuning.foundation)}
            save_model(
                self.out_dir / "model",
                weights,
                num_train_timesteps=self.diffusion.num_train_timesteps,
                schedule=self.diffusion.schedule,
                prediction=self.diffusion.prediction,
                info=info,
            )
            logger.info("wrote %s (%d steps)", self.out_dir / "model", self.step)
        self.ctx.barrier()


def probe_batch(model: ModelConfig, batch_size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random training micro-batch of the model's patch size, shaped like the loader's (for timing only)."""
    g = torch.Generator().manual_seed(seed)
    patch = tuple(model.patch_size)
    coords = crop_coordinates(patch, (0, 0, 0), patch, patch)
    return {
        "x0": torch.rand((batch_size, 1, *patch), generator=g) * 2 - 1,
        "anatomy": torch.randint(0, NULL_LABEL + 1, (batch_size, *patch), generator=g),
        "coords": coords[None].expand(batch_size, *coords.shape).contiguous(),
        "region": torch.randint(0, len(REGIONS), (batch_size,), generator=g),
    }


def probe_training_precision(
    network: MedDiffUNet | ControlledMedDiff, scheduler, precision: str, batch_size: int, device: torch.device | str
) -> PrecisionChoice:
    """Resolve ``training.precision`` (``precision``) by timing training steps of a copy of ``network`` on a random
    micro-batch of ``batch_size`` patches (:func:`meddiff.diffusion.precision.choose_precision`)."""
    device = torch.device(device)
    batch = probe_batch(network.model_config, batch_size)
    if isinstance(network, (ControlledMedDiff, MaskConcatUNet)):
        batch["control"] = torch.rand((batch_size, network.control_channels, *network.model_config.patch_size))

    def loss_fn(net, b, precision):
        return diffusion_loss(net, scheduler, b, torch.Generator().manual_seed(0), device, precision)

    run_once = training_step_fn(network, batch, device, loss_fn)
    model = network.model_config
    screen = conv_screen(model.channels[0], tuple(model.patch_size), batch_size, device)
    return choose_precision(precision, run_once, device, screen=screen, what="training step")
