"""Model folders (what inference loads) and resume checkpoints (what training restarts from).

A **model folder** rebuilds the network from the folder alone:

    architecture.json   MedDiffUNet.architecture(): model config + position mode (+ control channels for a
                        ControlNet-steered model, :class:`meddiff.models.controlnet.ControlledMedDiff`)
    diffusion.json      {"num_train_timesteps": T, "schedule": "cosine", "prediction": "epsilon"}
    weights.pt          state dict (the EMA weights when EMA was on)
    training.json       variant, steps, seed, loss summary, ...

A **training state** (``<out>/last``) holds everything a bit-exact resume needs: network, EMA and optimizer
state dicts, the step, the elapsed wall time, the running loss window and the torch / numpy / Python RNG
states (as tensors, so everything loads with ``torch.load(weights_only=True)``). ``state.json`` is written
last and names the step, for a quick look without loading tensors.

Both are written to a temporary folder and renamed into place (:func:`meddiff.atomic.atomic_dir`), so a
killed job leaves the old complete folder or the new complete one. ``atomic_dir`` swaps with two renames;
if a kill lands between them, ``last`` is briefly absent while ``.last.old`` holds the previous complete
state: :func:`find_training_state` falls back to it.
"""

from __future__ import annotations

import json
import pickle
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from meddiff.atomic import atomic_dir
from meddiff.diffusion.schedule import check_prediction
from meddiff.errors import WeightsMissingError
from meddiff.models.controlnet import ControlledMedDiff, build_network
from meddiff.models.network import MedDiffUNet

MODEL_FILES = ("architecture.json", "diffusion.json", "weights.pt", "training.json")
STATE_FILE = "state.pt"
STATE_JSON = "state.json"


@dataclass
class LoadedModel:
    """A trained model folder, loaded.

    Attributes:
        network: the ε-network in eval mode on the requested device.
        num_train_timesteps: T of the noise schedule it was trained with.
        schedule: MONAI noise schedule name ("cosine", ...).
        info: the folder's training.json.
        prediction: what the network outputs, "epsilon" or "v_prediction" (:mod:`meddiff.diffusion.schedule`).
    """

    network: MedDiffUNet | ControlledMedDiff
    num_train_timesteps: int
    schedule: str
    info: dict
    prediction: str


def save_model(
    folder: Path,
    network: MedDiffUNet | ControlledMedDiff,
    *,
    num_train_timesteps: int,
    schedule: str,
    info: dict,
    prediction: str,
) -> Path:
    """Write a model folder atomically (replacing an existing one) and return its path.

    Args:
        folder: destination folder.
        network: the (unwrapped) network whose weights to store, e.g. the EMA copy.
        num_train_timesteps, schedule, prediction: the noise schedule and the network's prediction type
            (written to diffusion.json).
        info: JSON-serialisable training metadata (written to training.json).
    """
    folder = Path(folder)
    with atomic_dir(folder) as tmp:
        (tmp / "architecture.json").write_text(json.dumps(network.architecture(), indent=2) + "\n")
        diffusion = {"num_train_timesteps": int(num_train_timesteps), "schedule": schedule, "prediction": prediction}
        (tmp / "diffusion.json").write_text(json.dumps(diffusion, indent=2) + "\n")
        state = {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
        torch.save(state, tmp / "weights.pt")
        (tmp / "training.json").write_text(json.dumps(info, indent=2, default=str) + "\n")
    return folder


def load_model(folder: Path, device: str | torch.device) -> LoadedModel:
    """Rebuild the network of a model folder from its JSON and load its weights (``weights_only=True``).

    Raises:
        WeightsMissingError: the folder or one of its files is missing or unreadable.
    """
    folder = Path(folder)
    missing = [name for name in MODEL_FILES if not (folder / name).is_file()]
    if missing:
        raise WeightsMissingError(f"{folder}: not a complete model folder (missing {missing}); train the model first")
    try:
        architecture = json.loads((folder / "architecture.json").read_text())
        diffusion = json.loads((folder / "diffusion.json").read_text())
        info = json.loads((folder / "training.json").read_text())
    except (json.JSONDecodeError, OSError) as err:
        raise WeightsMissingError(f"{folder}: unreadable model folder: {err}") from None
    weights = _load_tensors(folder / "weights.pt", "model weights")
    network = build_network(architecture)
    network.load_state_dict(weights)
    network.to(device).eval()
    return LoadedModel(
        network=network,
        num_train_timesteps=int(diffusion["num_train_timesteps"]),
        schedule=str(diffusion["schedule"]),
        info=info,
        prediction=check_prediction(str(diffusion.get("prediction", "epsilon"))),  # absent in older folders: ε
    )


def _load_tensors(path: Path, what: str) -> dict:
    """``torch.load(path, weights_only=True)`` on the CPU; a file that needs full unpickling (arbitrary objects,
    which could run code) or cannot be read raises :class:`WeightsMissingError` on one line naming ``path``."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's message spans several lines; keep the one naming the refused object
        reason = next((ln.strip() for ln in str(err).splitlines() if "GLOBAL" in ln), "not plain tensors")
        raise WeightsMissingError(
            f"{path}: refused {what}: it holds objects other than tensors, and loading them could run code "
            f"(torch.load weights_only=True: {reason})"
        ) from None
    except (RuntimeError, OSError, EOFError) as err:
        raise WeightsMissingError(f"{path}: unreadable {what}: {err}") from None


# ----------------------------------------------------------------------------------------------- RNG states


def capture_rng_states() -> dict[str, torch.Tensor | list[torch.Tensor]]:
    """Global torch (CPU, CUDA), numpy and Python RNG states as tensors (loadable with weights_only)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    states: dict = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
        "numpy_meta": torch.tensor([pos, has_gauss], dtype=torch.int64),
        "numpy_gauss": torch.tensor(cached, dtype=torch.float64),
        "python": torch.tensor(py_state, dtype=torch.int64),
        "python_meta": torch.tensor([py_version], dtype=torch.int64),
    }
    if py_gauss is not None:
        states["python_gauss"] = torch.tensor(py_gauss, dtype=torch.float64)
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    assert kind == "MT19937"
    return states


def restore_rng_states(states: dict) -> None:
    """Inverse of :func:`capture_rng_states`."""
    torch.set_rng_state(states["torch"])
    pos, has_gauss = (int(v) for v in states["numpy_meta"])
    keys = states["numpy_keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, pos, has_gauss, float(states["numpy_gauss"])))
    gauss = float(states["python_gauss"]) if "python_gauss" in states else None
    random.setstate((int(states["python_meta"][0]), tuple(int(v) for v in states["python"]), gauss))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


# ------------------------------------------------------------------------------------------- training state


@dataclass
class TrainingState:
    """Contents of a resume checkpoint (state dicts are on the CPU)."""

    step: int
    network: dict
    ema: dict | None
    optimizer: dict
    rng: dict
    elapsed_s: float
    extra: dict


def save_training_state(
    folder: Path,
    *,
    network: torch.nn.Module,
    ema: torch.nn.Module | None,
    optimizer: torch.optim.Optimizer,
    step: int,
    rng: dict | None = None,
    elapsed_s: float = 0.0,
    extra: dict | None = None,
) -> Path:
    """Write a resume checkpoint atomically (old complete state or new complete state, never a mix).

    Args:
        folder: checkpoint folder, e.g. ``<out>/last``.
        network: the unwrapped network.
        ema: the EMA model (``torch.optim.swa_utils.AveragedModel``) or None.
        optimizer: its state (Adam moments, step counts) is stored.
        step: number of optimizer steps done.
        rng: RNG states (default: :func:`capture_rng_states` now).
        elapsed_s: training wall time so far (summed over resumes).
        extra: small JSON-able values of tensors/ints/floats/str (e.g. the running loss window,
            the architecture) stored as is.
    """
    payload = {
        "step": int(step),
        "network": network.state_dict(),
        "ema": None if ema is None else ema.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": capture_rng_states() if rng is None else rng,
        "elapsed_s": float(elapsed_s),
        "extra": extra or {},
    }
    with atomic_dir(folder) as tmp:
        torch.save(payload, tmp / STATE_FILE)
        (tmp / STATE_JSON).write_text(json.dumps({"step": int(step), "elapsed_s": float(elapsed_s)}) + "\n")
    return Path(folder)


def find_training_state(folder: Path) -> Path | None:
    """The complete checkpoint folder to resume from: ``folder`` itself, or ``.<name>.old`` beside it when a
    kill interrupted :func:`meddiff.atomic.atomic_dir` between its two renames; None when there is none."""
    folder = Path(folder)
    for candidate in (folder, folder.with_name(f".{folder.name}.old")):
        if (candidate / STATE_JSON).is_file() and (candidate / STATE_FILE).is_file():
            if candidate == folder or not folder.exists():
                return candidate
    return None


def training_state_step(folder: Path) -> int | None:
    """Step of the resumable checkpoint at ``folder`` (from state.json), or None when there is none."""
    found = find_training_state(folder)
    if found is None:
        return None
    try:
        return int(json.loads((found / STATE_JSON).read_text())["step"])
    except (OSError, ValueError, KeyError):
        return None


def load_training_state(folder: Path) -> TrainingState | None:
    """Read a resume checkpoint (``weights_only=True``, tensors on the CPU); None when there is none.

    Raises:
        WeightsMissingError: the checkpoint exists but cannot be read.
    """
    found = find_training_state(folder)
    if found is None:
        return None
    payload = _load_tensors(found / STATE_FILE, "training checkpoint")
    return TrainingState(
        step=int(payload["step"]),
        network=payload["network"],
        ema=payload["ema"],
        optimizer=payload["optimizer"],
        rng=payload["rng"],
        elapsed_s=float(payload["elapsed_s"]),
        extra=payload["extra"],
    )
