"""nnU-Net v2 as the lesion-segmentation judge of paper 4.1.3: a 3d_fullres nnU-Net trained on real lesion
cases segments the generated lesion images, and its Dice against the masks that conditioned the generation
measures how faithfully the lesions were synthesised.

One function per workflow step, each the body of one rule: :func:`meddiff.evaluation.nnunet_data.export_raw_dataset`
→ :func:`plan_and_preprocess` → :func:`train` → :func:`predict` → :func:`score`. All nnU-Net state lives under
one ``root`` folder (``raw/``, ``preprocessed/``, ``results/``, see :func:`nnunet_environment`); nnunetv2 is
imported inside the functions, after its environment variables are set.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import sys
from pathlib import Path

import pandas as pd
import torch

from meddiff.atomic import atomic_dir, write_text
from meddiff.errors import ConfigError, InputImageError
from meddiff.evaluation.nnunet_data import FILE_ENDING

log = logging.getLogger(__name__)

TRAINER = "nnUNetTrainer"  # its schedule is set on the instance (num_epochs, ...), not by a subclass
PLANS = "nnUNetPlans"
CONFIGURATION = "3d_fullres"
FOLD = "all"  # train on every case: the judge is scored on other (generated) images, not by cross-validation
PREPROCESSED_STAMP = "meddiff_preprocessed.json"
TRAINING_STAMP = "meddiff_training.json"
_PATH_VARS = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")


def nnunet_environment(root: Path, processes: int = 1) -> dict[str, str]:
    """Point nnU-Net at ``root/{raw,preprocessed,results}`` (created) through its environment variables.

    Sets ``nnUNet_raw``, ``nnUNet_preprocessed``, ``nnUNet_results``, ``nnUNet_def_n_proc`` and
    ``nnUNet_n_proc_DA`` in ``os.environ`` (inherited by nnU-Net's worker processes). ``processes`` is the number
    of worker processes of planning, preprocessing and data augmentation, and also caps the torch threads of
    prediction (nnU-Net caps them at ``nnUNet_def_n_proc``); 0 is refused (``nnUNet_n_proc_DA=0`` breaks planning).

    Returns:
        The variables set, name -> value.

    Raises:
        ConfigError: nnunetv2 was imported earlier with other paths (versions that read them at import).
    """
    if processes < 1:
        raise ConfigError(f"nnU-Net needs at least 1 process, got {processes}")
    root = Path(root).resolve()
    env = {var: str(root / var.removeprefix("nnUNet_")) for var in _PATH_VARS}
    env.update(nnUNet_def_n_proc=str(processes), nnUNet_n_proc_DA=str(processes))
    os.environ.update(env)
    for var in _PATH_VARS:
        Path(env[var]).mkdir(parents=True, exist_ok=True)
    paths = sys.modules.get("nnunetv2.paths")
    for var in _PATH_VARS if paths is not None else ():
        seen = getattr(paths, var, None)
        seen = seen.get() if hasattr(seen, "get") else seen  # 2.8 reads os.environ on use; older froze a str
        if seen != env[var]:
            raise ConfigError(f"nnunetv2 was imported with {var}={seen}, not {env[var]}: set the nnU-Net root "
                              "before anything imports nnunetv2, or run this step in its own process")
    config = sys.modules.get("nnunetv2.configuration")
    if config is not None and config.default_num_processes != processes:
        log.warning("nnunetv2 was imported with nnUNet_def_n_proc=%s; it keeps using %s processes",
                    config.default_num_processes, config.default_num_processes)
    return env


def _dataset_name(dataset_id: int) -> str:
    from nnunetv2.utilities.dataset_name_id_conversion import convert_id_to_dataset_name

    try:
        return str(convert_id_to_dataset_name(int(dataset_id)))
    except RuntimeError as err:  # keep the first line of nnU-Net's message (the rest lists its env folders)
        raise ConfigError(f"nnU-Net dataset {dataset_id}: {str(err).splitlines()[0]}") from None


def plan_and_preprocess(root: Path, dataset_id: int, processes: int = 1, *,
                        patch_size: tuple[int, int, int] | None) -> Path:  # fmt: skip
    """Fingerprint, plan (default ``ExperimentPlanner``) and preprocess the ``3d_fullres`` configuration.

    Args:
        root: the nnU-Net root of :func:`nnunet_environment`; the raw dataset must have been exported there.
        dataset_id: nnU-Net dataset id.
        processes: worker processes (:func:`nnunet_environment`).
        patch_size: None keeps nnU-Net's planned patch; (z, y, x) replaces it in the plans file (nnU-Net's way to
            customise a plan), e.g. a small patch for a CPU demo. Each side must be divisible by the network's
            total downsampling (2^(stages - 1)).

    Returns:
        The preprocessed dataset folder; it holds ``meddiff_preprocessed.json`` once every step has finished.
    """
    env = nnunet_environment(root, processes)
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (
        extract_fingerprints, plan_experiments, preprocess,
    )

    name = _dataset_name(dataset_id)
    folder = Path(env["nnUNet_preprocessed"]) / name
    (folder / PREPROCESSED_STAMP).unlink(missing_ok=True)
    # the export already checked grids and labels: nnU-Net's integrity check would spawn a pool to redo it
    extract_fingerprints([int(dataset_id)], num_processes=processes, check_dataset_integrity=False, clean=True,
                         verbose=False, show_progress_bar=False)
    plans = plan_experiments([int(dataset_id)])
    if patch_size is not None:
        _set_patch_size(folder / f"{plans}.json", tuple(int(p) for p in patch_size))
    preprocess([int(dataset_id)], plans, configurations=(CONFIGURATION,), num_processes=[processes], verbose=False,
               show_progress_bar=False)
    write_text(folder / PREPROCESSED_STAMP, json.dumps({"plans": plans, "configuration": CONFIGURATION}))
    return folder


def _set_patch_size(plans_file: Path, patch_size: tuple[int, int, int]) -> None:
    plans = json.loads(plans_file.read_text())
    config = plans["configurations"][CONFIGURATION]
    factor = 2 ** (len(config["architecture"]["arch_kwargs"]["features_per_stage"]) - 1)
    if len(patch_size) != 3 or any(p % factor for p in patch_size):
        raise ConfigError(f"nnU-Net patch size {list(patch_size)} must be 3 sides divisible by {factor} for this plan")
    log.info("%s: patch %s -> %s", plans_file.name, config["patch_size"], list(patch_size))
    config["patch_size"] = list(patch_size)
    write_text(plans_file, json.dumps(plans, indent=2))


def model_folder(root: Path, dataset_name: str) -> Path:
    """nnU-Net's training output folder ``root/results/<Dataset{id:03d}_{name}>/nnUNetTrainer__nnUNetPlans__3d_fullres``
    (its ``fold_all/checkpoint_final.pth``, ``plans.json`` and ``dataset.json`` are all prediction needs)."""
    return Path(root).resolve() / "results" / dataset_name / f"{TRAINER}__{PLANS}__{CONFIGURATION}"


def _make_trainer(dataset_id: int, schedule: dict, device: torch.device, resume: bool):
    from nnunetv2.run.run_training import get_trainer_from_args

    trainer = get_trainer_from_args(str(dataset_id), CONFIGURATION, FOLD, TRAINER, PLANS,
                                    continue_training=resume, device=device)
    trainer.num_epochs = schedule["epochs"]  # read by initialize() (poly LR schedule), so set before it
    trainer.num_iterations_per_epoch = schedule["iterations_per_epoch"]
    trainer.num_val_iterations_per_epoch = schedule["val_iterations_per_epoch"]
    trainer.save_every = 1  # checkpoint_latest.pth after every epoch: a killed run resumes from its last epoch
    return trainer


def train(root: Path, dataset_id: int, epochs: int, iterations_per_epoch: int, device: str | torch.device = "cpu",
          val_iterations_per_epoch: int = 1, processes: int = 1) -> Path:
    """Train the lesion judge: nnU-Net ``3d_fullres`` on fold ``all`` with a short schedule, no final validation.

    Cached and resumable: returns at once if this schedule already finished (``fold_all/checkpoint_final.pth``
    and ``meddiff_training.json`` marked finished), continues from ``checkpoint_latest.pth`` (written every epoch)
    after a kill. nnU-Net's per-epoch pseudo-Dice on ``val_iterations_per_epoch`` patches is only logged.

    Args:
        root: nnU-Net root (:func:`nnunet_environment`), after :func:`plan_and_preprocess`.
        epochs, iterations_per_epoch: the schedule (nnU-Net's default is 1000 × 250, batch and patch from the plan).
        device: torch device ("cpu", "cuda").
        val_iterations_per_epoch: patches of nnU-Net's per-epoch pseudo-Dice (default 50).
        processes: data-augmentation worker processes (:func:`nnunet_environment`).

    Returns:
        The model folder (:func:`model_folder`).

    Raises:
        ConfigError: not preprocessed, or the folder holds a model trained with another schedule or not by
        meddiff (delete it to retrain).
    """
    if min(epochs, iterations_per_epoch, val_iterations_per_epoch) < 1:
        raise ConfigError("nnU-Net training needs epochs, iterations and validation iterations >= 1")
    env = nnunet_environment(root, processes)
    name = _dataset_name(dataset_id)
    if not (Path(env["nnUNet_preprocessed"]) / name / PREPROCESSED_STAMP).exists():
        raise ConfigError(f"{Path(env['nnUNet_preprocessed']) / name}: not preprocessed (run plan_and_preprocess)")
    folder = model_folder(root, name)
    fold = folder / f"fold_{FOLD}"
    schedule = {"epochs": int(epochs), "iterations_per_epoch": int(iterations_per_epoch),
                "val_iterations_per_epoch": int(val_iterations_per_epoch)}
    stamp = fold / TRAINING_STAMP
    previous = json.loads(stamp.read_text()) if stamp.exists() else None
    if previous is not None and previous["schedule"] != schedule:
        raise ConfigError(f"{fold}: trained with {previous['schedule']}, asked for {schedule}; delete it to retrain")
    if previous is None and (fold / "checkpoint_final.pth").exists():
        raise ConfigError(f"{fold}: holds a model meddiff did not train; delete it to retrain")
    if previous is not None and previous["finished"] and (fold / "checkpoint_final.pth").exists():
        log.info("%s: already trained (%s), not retraining", fold, schedule)
        return folder
    device = torch.device(device)
    latest = fold / "checkpoint_latest.pth"
    trainer = _make_trainer(dataset_id, schedule, device, resume=latest.exists())
    write_text(stamp, json.dumps({"schedule": schedule, "finished": False}))
    if latest.exists():
        try:
            trainer.load_checkpoint(str(latest))
            log.info("%s: resuming at epoch %d", latest, trainer.current_epoch)
        except (RuntimeError, EOFError, pickle.UnpicklingError, KeyError) as err:  # killed while torch.save wrote it
            log.warning("%s is unreadable (%s): training from scratch", latest, err)
            latest.unlink()
            trainer = _make_trainer(dataset_id, schedule, device, resume=False)
    trainer.run_training()  # not perform_actual_validation(): the judge is scored by score() on other images
    write_text(stamp, json.dumps({"schedule": schedule, "finished": True}))
    return folder


def predict(root: Path, dataset_id: int, images_folder: Path, out_folder: Path,
            device: str | torch.device = "cpu", processes: int = 1) -> Path:
    """Segment ``images_folder/<case>_0000.nii.gz`` with the trained judge into ``out_folder/<case>.nii.gz``
    (uint8, 1 = lesion, on each image's grid), without test-time mirroring. ``out_folder`` is replaced atomically.

    Raises:
        ConfigError: the judge is not trained. InputImageError: no ``*_0000.nii.gz`` in ``images_folder``.
    """
    nnunet_environment(root, processes)
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    folder = model_folder(root, _dataset_name(dataset_id))
    stamp = folder / f"fold_{FOLD}" / TRAINING_STAMP
    if not stamp.exists() or not json.loads(stamp.read_text())["finished"]:
        raise ConfigError(f"{folder}: the nnU-Net lesion judge is not trained (run train)")
    suffix = "_0000" + FILE_ENDING
    images = sorted(Path(images_folder).glob("*" + suffix))
    if not images:
        raise InputImageError(f"{images_folder}: no image named <case>{suffix} to segment")
    cases = [p.name[: -len(suffix)] for p in images]
    predictor = nnUNetPredictor(use_mirroring=False, device=torch.device(device), allow_tqdm=sys.stderr.isatty())
    predictor.initialize_from_trained_model_folder(str(folder), use_folds=(FOLD,))
    with atomic_dir(out_folder) as tmp:
        # explicit file lists: given a folder, nnU-Net lists it with a 12-process fork Pool
        predictor.predict_from_files_sequential([[str(p)] for p in images], [str(tmp / c) for c in cases],
                                                save_probabilities=False, overwrite=True)
        missing = [c for c in cases if not (tmp / f"{c}{FILE_ENDING}").exists()]
        if missing:
            raise InputImageError(f"{images_folder}: nnU-Net wrote no prediction for {missing[:5]}")
    return Path(out_folder)


def score(predictions_folder: Path, masks_folder: Path) -> pd.DataFrame:
    """Dice of the judge's predictions against the lesion masks that conditioned the generated images (4.1.3).

    Computed by nnU-Net's ``compute_metrics_on_folder`` on label 1. Dice is NaN for a case whose mask and
    prediction are both empty (nothing to compare), 0 when only one is empty; the mean skips NaN (NaN if all are).

    Args:
        predictions_folder: ``<case>.nii.gz`` from :func:`predict`.
        masks_folder: ``<case>.nii.gz`` reference masks (0/1, same grids), e.g. from ``export_test_images``.

    Returns:
        One row per case (sorted) plus a last row ``case == "mean"``; columns ``case``, ``dice``, ``n_ref`` and
        ``n_pred`` (lesion voxels in mask and prediction; the mean row holds their means).

    Raises:
        InputImageError: no masks, or the two folders do not hold the same cases.
    """
    from nnunetv2.evaluation.evaluate_predictions import compute_metrics_on_folder
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    masks = {p.name for p in Path(masks_folder).glob("*" + FILE_ENDING)}
    preds = {p.name for p in Path(predictions_folder).glob("*" + FILE_ENDING)}
    if not masks:
        raise InputImageError(f"{masks_folder}: no reference mask <case>{FILE_ENDING}")
    if masks != preds:  # nnU-Net skips masks without prediction and fails on predictions without mask
        raise InputImageError(f"{predictions_folder}: cases differ from {masks_folder}: missing "
                              f"{sorted(masks - preds)[:5]}, unexpected {sorted(preds - masks)[:5]}")
    result = compute_metrics_on_folder(str(masks_folder), str(predictions_folder), None, SimpleITKIO(),
                                       FILE_ENDING, [1], num_processes=1)
    rows = [
        {"case": Path(r["reference_file"]).name[: -len(FILE_ENDING)], "dice": float(r["metrics"][1]["Dice"]),
         "n_ref": r["metrics"][1]["n_ref"], "n_pred": r["metrics"][1]["n_pred"]}
        for r in result["metric_per_case"]
    ]
    table = pd.DataFrame(rows).sort_values("case", ignore_index=True)
    mean = table[["dice", "n_ref", "n_pred"]].mean()  # pandas skips NaN, like nnU-Net's np.nanmean
    return pd.concat([table, pd.DataFrame([{"case": "mean", **mean.to_dict()}])], ignore_index=True)
