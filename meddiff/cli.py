"""The `meddiff` command: one subcommand per workflow rule. Thin by design: parse, call one function.

Every subcommand that reads settings takes ``--config``: a whole config file (validated against the schema), or
the file the workflow writes for the command (``results/<run>/config/<command>.yaml``). Either way the command
sees only the settings :data:`meddiff.config.COMMAND_SECTIONS` declares for it. Errors on bad input print one
line and exit with status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from meddiff.config import FOUNDATION_RUN
from meddiff.errors import MeddiffError

log = logging.getLogger("meddiff")


def _settings(args, key: str | None = None):
    """The settings the command may read (:data:`meddiff.config.COMMAND_SECTIONS`), from ``--config``: the
    file the workflow wrote for it, or a whole config file."""
    from meddiff.config import load_sections

    return load_sections(args.config, key or args.command)


def cmd_fetch(args) -> None:
    from meddiff.data.fetch import fetch_and_index
    from meddiff.data.registry import dataset_spec, load_registry

    s = _settings(args)
    fetch_and_index(
        dataset_spec(load_registry(s["data.registry"]), args.dataset),
        Path(s["data.root"]),
        Path(args.index),
        phantom=s["data.phantom"],
        seed=s["seed"],
        workers=args.workers,
    )


def cmd_masks(args) -> None:
    from meddiff.data.masks import make_anatomy_mask

    make_anatomy_mask(Path(args.image), Path(args.out), _settings(args)["masks"], args.reference)


def cmd_preprocess(args) -> None:
    from meddiff.data.preprocess import preprocess_case
    from meddiff.data.registry import load_registry

    s = _settings(args)
    spec = load_registry(s["data.registry"])[args.dataset]
    regions = args.region or list(spec.regions)
    preprocess_case(
        Path(args.image),
        Path(args.mask),
        Path(args.out),
        case=args.case,
        dataset=args.dataset,
        regions=regions,
        cfg=s["preprocess"],
        lesion_path=Path(args.lesion) if args.lesion else None,
        lesion_dataset="lesion" in spec.tasks,
    )


def cmd_list_caches(args) -> None:
    from meddiff.atomic import write_text

    write_text(args.out, "".join(f"{p}\n" for p in args.caches))


def cmd_manifest(args) -> None:
    from meddiff.data.manifest import build_manifest, write_manifest

    s = _settings(args)
    case_dirs = [Path(line) for done in args.done for line in Path(done).read_text().split()]
    write_manifest(build_manifest(case_dirs, s["data.split"], s["seed"]), Path(args.out))


def _sampling(s, args, model_dir: Path):
    """``sampling`` with its precision resolved: from ``--precision`` (the run's probe), as set, or for
    ``auto`` without a probe file by timing the model of ``model_dir`` now."""
    import dataclasses

    from meddiff.diffusion.precision import read_choice

    sampling = s["sampling"]
    if args.precision:
        chosen = read_choice(Path(args.precision), "sampling").chosen
    elif sampling.precision != "auto":
        return sampling
    else:
        from meddiff.diffusion.checkpoint import load_model
        from meddiff.diffusion.samplers import probe_sampling_precision

        network = load_model(model_dir, s.device()).network
        chosen = probe_sampling_precision(network, sampling.precision, sampling.patch_batch_size, s.device()).chosen
    return dataclasses.replace(sampling, precision=chosen)


def cmd_probe_precision(args) -> None:
    from meddiff.diffusion.precision import write_choices
    from meddiff.diffusion.samplers import probe_sampling_precision
    from meddiff.diffusion.schedule import make_scheduler
    from meddiff.diffusion.training import probe_training_precision
    from meddiff.models.network import MedDiffUNet

    s = _settings(args)
    device = s.device()
    network = MedDiffUNet(s["model"], s["variant"].position).to(device)
    d = s["diffusion"]
    scheduler = make_scheduler(d.num_train_timesteps, d.schedule, d.prediction)
    choices = {
        "training": probe_training_precision(
            network, scheduler, s["training.precision"], s["training.batch_size"], device
        ),
        "sampling": probe_sampling_precision(
            network.eval(), s["sampling.precision"], s["sampling.patch_batch_size"], device
        ),
    }
    write_choices(Path(args.out), choices)


def cmd_train(args) -> None:
    from meddiff.diffusion.training import train

    s = _settings(args, f"train.{args.variant}")
    out = Path(args.out)
    if out.name != "model":
        raise MeddiffError(f"{out}: the model folder must be named 'model' (its parent keeps checkpoints and logs)")
    training = s["training"]
    precision = None
    if args.precision:
        from meddiff.diffusion.precision import read_choice

        precision = read_choice(Path(args.precision), "training")
    if args.variant == FOUNDATION_RUN and args.continue_from is None:
        raise MeddiffError(f"'{FOUNDATION_RUN}' continues the last variant's run: it needs --continue-from")
    train(
        Path(args.manifest),
        out.parent,
        model=s["model"],
        diffusion=s["diffusion"],
        training=training,
        variant=s["variant"],
        seed=s["seed"],
        device=s.device(),
        continue_from=None if args.continue_from is None else Path(args.continue_from),
        precision=precision,
    )


def cmd_synthesize(args) -> None:
    from meddiff.tasks.synthesis import synthesize_case

    s = _settings(args)
    synthesize_case(
        Path(args.model),
        Path(args.case_dir),
        args.region,
        Path(args.out),
        sampling=_sampling(s, args, Path(args.model)),
        seed=s["seed"],
        device=s.device(),
        unconditional=args.mode == "unconditional",
    )


def cmd_evaluate_synthesis(args) -> None:
    from meddiff.evaluation.synthesis import evaluate_synthesis

    s = _settings(args)
    evaluate_synthesis(
        Path(args.manifest),
        Path(args.synthetic),
        Path(args.out),
        Path(args.features),
        Path(args.examples),
        synthesis_cases=s["evaluation.synthesis_cases"],
        medicalnet_weights=s["evaluation.medicalnet_weights"],
        masks=s["masks"],
        device=s.device(),
    )


def cmd_report_synthesis(args) -> None:
    from meddiff.reporting.synthesis_report import report_synthesis

    report_synthesis(Path(args.results), _settings(args))


def cmd_denoise(args) -> None:
    from meddiff.tasks.denoising import denoise_test_cases

    s = _settings(args)
    denoise_test_cases(
        Path(args.model),
        Path(args.manifest),
        Path(args.out),
        cfg=s["denoising"],
        sampling=_sampling(s, args, Path(args.model)),
        windows=s["preprocess.windows"],
        spacing_mm=s["preprocess.spacing_mm"],
        interpolation=s["preprocess.image_interpolation"],
        patch_size=s["model.patch_size"],
        data_root=Path(s["data.root"]),
        seed=s["seed"],
        device=s.device(),
    )


def cmd_evaluate_denoising(args) -> None:
    from meddiff.evaluation.denoising import evaluate_denoising_task

    evaluate_denoising_task(Path(args.task), Path(args.out), window=_settings(args)["denoising.window"])


def cmd_anomaly(args) -> None:
    from meddiff.tasks.anomaly import detect_anomalies

    s = _settings(args)
    detect_anomalies(
        Path(args.model),
        Path(args.out),
        cfg=s["anomaly"],
        sampling=_sampling(s, args, Path(args.model)),
        window=s["preprocess.windows"]["abdomen"],
        spacing_mm=s["preprocess.spacing_mm"],
        patch_size=s["model.patch_size"],
        mask_backend=s["masks.backend"],
        data_root=Path(s["data.root"]),
        seed=s["seed"],
        device=s.device(),
    )


def cmd_evaluate_anomaly(args) -> None:
    from meddiff.evaluation.anomaly import evaluate_anomaly_task

    s = _settings(args)
    evaluate_anomaly_task(
        Path(args.maps), Path(args.out), Path(args.examples), threshold=s["anomaly.threshold"],
        dataset=s["anomaly.dataset"],
    )  # fmt: skip


def cmd_report_denoising(args) -> None:
    from meddiff.reporting.task_reports import report_denoising

    report_denoising(Path(args.evaluation), Path(args.noise), Path(args.results), _settings(args))


def cmd_report_anomaly(args) -> None:
    from meddiff.reporting.task_reports import report_anomaly

    report_anomaly(Path(args.metrics), Path(args.examples), Path(args.results), _settings(args))


# `meddiff finetune` tasks of the lesion condition -> how their network starts (Table 8's three rows)
FINETUNE_STARTS = {"lesion": "foundation", "lesion_scratch": "scratch", "lesion_medddpm": "mask_concat"}


def cmd_finetune(args) -> None:
    import dataclasses

    from meddiff.diffusion.precision import read_choice
    from meddiff.diffusion.training import FineTuning, finetune

    s = _settings(args, "finetune-sr" if args.task == "sr" else "finetune-lesion")
    out = Path(args.out)
    if out.name != "model":
        raise MeddiffError(f"{out}: the model folder must be named 'model' (its parent keeps checkpoints and logs)")
    f = s["finetune"]
    training = dataclasses.replace(s["training"], steps=f.steps, lr=f.lr, checkpoint_every=f.checkpoint_every,
                                   foundation_steps=None)  # fmt: skip
    if args.task == "sr":
        tuning = FineTuning(Path(args.foundation), "sr", s["super_resolution.thick_factor"], start="foundation")
    else:
        tuning = FineTuning(Path(args.foundation), "lesion", None, start=FINETUNE_STARTS[args.task])
    finetune(Path(args.manifest), out.parent, tuning=tuning, training=training, seed=s["seed"], device=s.device(),
             precision=read_choice(Path(args.precision), "training") if args.precision else None)  # fmt: skip


def cmd_super_resolve(args) -> None:
    from meddiff.tasks.super_resolution import run_super_resolution

    s = _settings(args)
    run_super_resolution(Path(args.model), Path(args.manifest), Path(args.out), cfg=s["super_resolution"],
                         sampling=_sampling(s, args, Path(args.model)), device=s.device(), seed=s["seed"])  # fmt: skip


def cmd_evaluate_super_resolution(args) -> None:
    from meddiff.evaluation.super_resolution import evaluate_super_resolution

    evaluate_super_resolution(Path(args.task), Path(args.out), trim=_settings(args)["super_resolution.trim_slices"])


def cmd_report_super_resolution(args) -> None:
    from meddiff.reporting.task_reports import report_super_resolution

    report_super_resolution(Path(args.evaluation), Path(args.results), _settings(args))


def cmd_train_judge(args) -> None:
    import json

    from meddiff.atomic import write_text
    from meddiff.evaluation.lesion_generation import JUDGE_ID, train_judge

    s = _settings(args)
    folder = train_judge(Path(args.manifest), Path(args.root), dataset=s["lesions.dataset"], seed=s["seed"], dataset_id=JUDGE_ID,
                         epochs=s["lesions.judge_epochs"], iterations_per_epoch=s["lesions.judge_iterations_per_epoch"],
                         patch_size=s["lesions.judge_patch_size"], device=s.device())  # fmt: skip
    write_text(args.out, json.dumps({"root": args.root, "dataset_id": JUDGE_ID, "model": str(folder),
                                     "epochs": s["lesions.judge_epochs"],
                                     "iterations_per_epoch": s["lesions.judge_iterations_per_epoch"],
                                     "patch_size": s["lesions.judge_patch_size"]}, indent=2))


def cmd_evaluate_lesions(args) -> None:
    import json

    from meddiff.evaluation.lesion_generation import evaluate_lesion_generation

    s = _settings(args)
    judge = json.loads(Path(args.judge).read_text(encoding="utf-8"))
    evaluate_lesion_generation(Path(args.task), Path(args.manifest), Path(judge["root"]), Path(args.out),
                               dataset_id=judge["dataset_id"], medicalnet_weights=s["evaluation.medicalnet_weights"],
                               device=s.device())  # fmt: skip


# Table 8's model rows (the paper's names) -> `meddiff finetune` task that trains them
LESION_MODELS = {"Med-DDPM": "lesion_medddpm", "MedDiff-FM (from scratch)": "lesion_scratch",
                 "MedDiff-FM (fine-tune)": "lesion"}  # fmt: skip


def cmd_generate_lesions(args) -> None:
    from meddiff.tasks.lesion_generation import run_lesion_generation

    s = _settings(args)
    models = dict(zip(LESION_MODELS, (Path(m) for m in args.models), strict=True))
    run_lesion_generation(models, Path(args.manifest), Path(args.out), dataset=s["lesions.dataset"],
                          cases=s["lesions.cases"], sampling=_sampling(s, args, models["MedDiff-FM (fine-tune)"]),
                          device=s.device(), seed=s["seed"])  # fmt: skip


def cmd_inpaint_lesions(args) -> None:
    from meddiff.tasks.lesion_inpainting import run_lesion_inpainting

    s = _settings(args)
    lesions = s["lesions"]
    run_lesion_inpainting(Path(args.model), Path(args.manifest), Path(args.out), dataset=lesions.dataset,
                          cases=lesions.cases, steps=lesions.repaint_steps, jump_length=lesions.jump_length,
                          resamples=lesions.resamples, sampling=_sampling(s, args, Path(args.model)),
                          device=s.device(), seed=s["seed"])  # fmt: skip


def cmd_evaluate_inpainting(args) -> None:
    import json

    from meddiff.evaluation.lesion_generation import evaluate_lesion_inpainting

    judge = json.loads(Path(args.judge).read_text())
    evaluate_lesion_inpainting(Path(args.task), Path(args.manifest), Path(judge["root"]), Path(args.out),
                               dataset_id=judge["dataset_id"], device=_settings(args).device())  # fmt: skip


def cmd_report_lesions(args) -> None:
    from meddiff.reporting.task_reports import report_lesions

    report_lesions(Path(args.evaluation), Path(args.inpainting), Path(args.judge), Path(args.results),
                   _settings(args))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meddiff",
        description="MedDiff-FM workflow steps. Normally run by Snakemake (see README.md); each subcommand "
        "is one rule and can be run by hand for debugging.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="CPU threads of torch, BLAS and SimpleITK (the workflow passes each rule's threads:); default: all cores",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name, func, help_text, *arguments, needs_config=True):
        p = sub.add_parser(name, help=help_text, description=help_text)
        for args, kwargs in arguments:
            p.add_argument(*args, **kwargs)
        if needs_config:
            p.add_argument("--config", required=True, help="config YAML: a whole config (validated against the "
                           "schema) or the command's settings file the workflow writes (results/<run>/config/)")
        p.set_defaults(func=func)
        return p

    add(
        "fetch",
        cmd_fetch,
        "Get a registry dataset (generate, download + verify + extract, or check a manual placement) "
        "and write its case index TSV.",
        (("dataset",), {"help": "registry name, e.g. phantom, btcv"}),
        (("index",), {"help": "output case index (TSV)"}),
        (("--workers",), {"type": int, "default": 1, "help": "processes generating the phantom cohort"}),
    )
    add(
        "masks",
        cmd_masks,
        "Anatomy mask in the 118-class label space (TotalSegmentator 117 + body) of one CT.",
        (("image",), {"help": "CT image (NIfTI/NRRD file or DICOM series folder)"}),
        (("out",), {"help": "output label map (.nii.gz)"}),
        (("--reference",), {"default": None,
                            "help": "the case's shipped label map (masks.backend: reference only)"}),
    )
    add(
        "preprocess",
        cmd_preprocess,
        "Reorient, resample, split into regions, window and cache one case for training.",
        (("image",), {"help": "CT image"}),
        (("mask",), {"help": "anatomy mask from `meddiff masks`"}),
        (("out",), {"help": "output cache folder of the case"}),
        (("--dataset",), {"required": True, "help": "registry name of the case's dataset"}),
        (("--case",), {"required": True, "help": "case id"}),
        (("--lesion",), {"default": None, "help": "optional lesion mask of the case"}),
        (("--region",), {"action": "append", "choices": ["han", "chest", "abdomen", "wholebody"],
                         "help": "the case's region (default: the dataset's regions); wholebody = split by landmarks"}),
    )
    add(
        "probe-precision",
        cmd_probe_precision,
        "Time fp32 against bf16 autocast for a training step and a sampling batch of the configured network on this "
        "device, and write the choice (training.precision / sampling.precision 'auto'; forced values are recorded).",
        (("out",), {"help": "output JSON"}),
    )
    add(
        "list-caches",
        cmd_list_caches,
        "Record the cache folders of a dataset (marks the dataset as preprocessed).",
        (("out",), {"help": "output list"}),
        (("caches",), {"nargs": "*", "help": "case cache folders"}),
        needs_config=False,
    )
    add(
        "manifest",
        cmd_manifest,
        "Manifest of all preprocessed crops with the deterministic train/val/test split (CSV + Markdown).",
        (("out",), {"help": "output manifest.csv"}),
        (("done",), {"nargs": "+", "help": "per-dataset cache lists from list-caches"}),
    )
    add(
        "train",
        cmd_train,
        "Pre-train one model variant (resumes from <out>/../last after an interruption).",
        (("variant",), {"help": f"variant name from the config's variants list, or '{FOUNDATION_RUN}': the last "
                                "variant trained on to training.foundation_steps"}),
        (("manifest",), {"help": "manifest.csv from `meddiff manifest`"}),
        (("out",), {"help": "output model folder (…/<variant>/model)"}),
        (("--continue-from",), {"metavar": "RUN", "help": "start a fresh run from this finished run folder of "
                                "the same variant (its last/ checkpoint and loss.csv), e.g. "
                                "results/demo/models/meddiff_fm"}),
        (("--precision",), {"metavar": "PROBE", "help": "precision probe JSON of the run (`meddiff probe-precision`); "
                                 "without it precision 'auto' is measured now"}),
    )
    add(
        "synthesize",
        cmd_synthesize,
        "Synthesise one test crop at its own size from its region and anatomy (sliding-window sampling).",
        (("model",), {"help": "trained model folder"}),
        (("case_dir",), {"help": "the case's cache folder"}),
        (("region",), {"choices": ["han", "chest", "abdomen"]}),
        (("out",), {"help": "output NIfTI in HU with the crop's geometry"}),
        (("--mode",), {"choices": ["conditional", "unconditional"], "default": "conditional",
                       "help": "unconditional: anatomy replaced by the null label"}),
        (("--precision",), {"metavar": "PROBE", "help": "precision probe JSON of the run (`meddiff probe-precision`); "
                                 "without it precision 'auto' is measured now"}),
    )
    add(
        "evaluate-synthesis",
        cmd_evaluate_synthesis,
        "Metrics of every synthesised test crop (MS-SSIM, LPIPS-style, HU histogram, Dice) + features for FID/MMD.",
        (("manifest",), {"help": "manifest.csv"}),
        (("synthetic",), {"help": "folder of synthetic volumes (<dataset>/<region>/<case>.nii.gz)"}),
        (("out",), {"help": "per-case metrics CSV"}),
        (("features",), {"help": "features .npz (FID/MMD pools)"}),
        (("examples",), {"help": "Figure 5 material .npz (the first crop of each region)"}),
    )
    add(
        "report-synthesis",
        cmd_report_synthesis,
        "Tables 3 and 4, the training summary and Figure 5 from the synthesis evaluations.",
        (("results",), {"help": "results/<run> folder"}),
    )
    add(
        "denoise",
        cmd_denoise,
        "Zero-shot low-dose CT denoising (DiffPIR) of the test cases, with NLM and BM3D baselines: writes the volumes.",
        (("model",), {"help": "trained model folder (MedDiff-FM)"}),
        (("manifest",), {"help": "manifest.csv (demo: test crops to simulate low dose on)"}),
        (("out",), {"help": "output task folder (cases.csv, noise.json, volumes/)"}),
        (("--precision",), {"metavar": "PROBE", "help": "precision probe JSON of the run (`meddiff probe-precision`); "
                                 "without it precision 'auto' is measured now"}),
    )
    add(
        "evaluate-denoising",
        cmd_evaluate_denoising,
        "PSNR / SSIM of every denoised volume and the low-dose input against the full dose (Table 5 rows).",
        (("task",), {"help": "folder written by `meddiff denoise`"}),
        (("out",), {"help": "output evaluation folder (metrics.csv, table5.csv, fig6_slices.npz)"}),
    )
    add(
        "anomaly",
        cmd_anomaly,
        "Zero-shot anomaly detection in the liver (one-step x0 reconstruction from t = anomaly.timestep): "
        "writes the anomaly maps.",
        (("model",), {"help": "trained model folder (MedDiff-FM)"}),
        (("out",), {"help": "output anomaly maps (.npz)"}),
        (("--precision",), {"metavar": "PROBE", "help": "precision probe JSON of the run (`meddiff probe-precision`); "
                                 "without it precision 'auto' is measured now"}),
    )
    add(
        "evaluate-anomaly",
        cmd_evaluate_anomaly,
        "Image / pixel AUROC, PRO and Dice of the anomaly maps (the Table 6 row).",
        (("maps",), {"help": "anomaly maps of `meddiff anomaly`"}),
        (("out",), {"help": "per-case metrics CSV"}),
        (("examples",), {"help": "summary + Figure 7 material (.npz)"}),
    )
    add(
        "report-denoising",
        cmd_report_denoising,
        "Table 5 and Figure 6 from a denoising evaluation folder.",
        (("evaluation",), {"help": "folder written by `meddiff evaluate-denoising`"}),
        (("noise",), {"help": "noise.json of the `meddiff denoise` task folder"}),
        (("results",), {"help": "results/<run> folder"}),
    )
    add(
        "report-anomaly",
        cmd_report_anomaly,
        "Table 6 and Figure 7 from an anomaly evaluation.",
        (("metrics",), {"help": "per-case metrics CSV of `meddiff evaluate-anomaly`"}),
        (("examples",), {"help": ".npz of `meddiff evaluate-anomaly`"}),
        (("results",), {"help": "results/<run> folder"}),
    )
    add(
        "finetune",
        cmd_finetune,
        "Fine-tune a ControlNet on the frozen foundation model for one task condition (paper 3.3, eq. 4); resumes "
        "from <out>/../last after an interruption.",
        (("task",), {"choices": ["sr", *FINETUNE_STARTS], "help": "sr: condition = thick slices upsampled onto the "
                     "thin grid; lesion: condition = the lesion mask; lesion_scratch / lesion_medddpm: Table 8's "
                     "models trained from scratch on the lesion crops (the same network and ControlNet; the "
                     "Med-DDPM-style mask concatenation), with the foundation's architecture"}),
        (("foundation",), {"help": "the foundation model folder"}),
        (("manifest",), {"help": "manifest.csv whose train crops fine-tune"}),
        (("out",), {"help": "output model folder (…/controlnet_<task>/model)"}),
        (("--precision",), {"metavar": "PROBE", "help": "precision probe JSON of the run (`meddiff probe-precision`); "
                                 "without it precision 'auto' is measured now"}),
    )
    add(
        "super-resolve",
        cmd_super_resolve,
        "Volumetric super-resolution of the test crops (DiffPIR with the SR ControlNet) and the interpolation "
        "baselines of Table 7: writes one .npz per crop.",
        (("model",), {"help": "fine-tuned model folder (`meddiff finetune sr`)"}),
        (("manifest",), {"help": "manifest.csv (its test crops of super_resolution.dataset)"}),
        (("out",), {"help": "output task folder"}),
        (("--precision",), {"metavar": "PROBE", "help": "precision probe JSON of the run (`meddiff probe-precision`); "
                                 "without it precision 'auto' is measured now"}),
    )
    add(
        "evaluate-super-resolution",
        cmd_evaluate_super_resolution,
        "PSNR / SSIM of every super-resolved crop as RPLHR-CT evaluates (the Table 7 rows).",
        (("task",), {"help": "folder written by `meddiff super-resolve`"}),
        (("out",), {"help": "output evaluation folder (metrics.csv, table7.csv, fig8_slices.npz)"}),
    )
    add(
        "report-super-resolution",
        cmd_report_super_resolution,
        "Table 7 and Figure 8 from a super-resolution evaluation folder.",
        (("evaluation",), {"help": "folder written by `meddiff evaluate-super-resolution`"}),
        (("results",), {"help": "results/<run> folder"}),
    )
    add(
        "generate-lesions",
        cmd_generate_lesions,
        "Lesion generation (Table 8): every model generates each test lesion crop from its anatomy, region and "
        "lesion mask; one .npz per crop.",
        (("manifest",), {"help": "manifest.csv (its test crops of lesions.dataset with a lesion mask)"}),
        (("out",), {"help": "output task folder"}),
        (("models",), {"nargs": 3, "help": f"model folders of {', '.join(LESION_MODELS)}, in this order"}),
        (("--precision",), {"metavar": "PROBE", "help": "precision probe JSON of the run (`meddiff probe-precision`); "
                                 "without it precision 'auto' is measured now"}),
    )
    add(
        "inpaint-lesions",
        cmd_inpaint_lesions,
        "Lesion inpainting (Table 9): RePaint with the fine-tuned lesion ControlNet puts a same-region lesion mask "
        "into each healthy test crop; outside the mask the crop is kept. One .npz per crop.",
        (("model",), {"help": "the fine-tuned lesion model folder (`meddiff finetune lesion`)"}),
        (("manifest",), {"help": "manifest.csv"}),
        (("out",), {"help": "output task folder"}),
        (("--precision",), {"metavar": "PROBE", "help": "precision probe JSON of the run (`meddiff probe-precision`); "
                                 "without it precision 'auto' is measured now"}),
    )
    add(
        "evaluate-inpainting",
        cmd_evaluate_inpainting,
        "Table 9 row: the nnU-Net judge's Dice on the inpainted crops against the inpainted masks.",
        (("task",), {"help": "folder written by `meddiff inpaint-lesions`"}),
        (("manifest",), {"help": "manifest.csv (voxel spacings)"}),
        (("judge",), {"help": "JSON written by `meddiff train-judge`"}),
        (("out",), {"help": "output evaluation folder (dice.csv, table9.csv)"}),
    )
    add(
        "train-judge",
        cmd_train_judge,
        "Train the nnU-Net lesion judge of Tables 8-9 on the real train lesion crops (export, plan and preprocess, "
        "train; cached and resumable in its nnU-Net folders).",
        (("manifest",), {"help": "manifest.csv (its train crops of lesions.dataset with a lesion mask)"}),
        (("root",), {"help": "the run's nnU-Net folder (raw/, preprocessed/, results/ below it)"}),
        (("out",), {"help": "output JSON naming the trained judge"}),
    )
    add(
        "evaluate-lesions",
        cmd_evaluate_lesions,
        "Table 8 rows: MS-SSIM, LPIPS-style, FID, MMD of the generated lesion crops and the nnU-Net judge's Dice on "
        "them and on the real test crops.",
        (("task",), {"help": "folder written by `meddiff generate-lesions`"}),
        (("manifest",), {"help": "manifest.csv (voxel spacings)"}),
        (("judge",), {"help": "JSON written by `meddiff train-judge`"}),
        (("out",), {"help": "output evaluation folder (dice.csv, table8.csv)"}),
    )
    add(
        "report-lesions",
        cmd_report_lesions,
        "Tables 8 and 9 from the lesion-generation and lesion-inpainting evaluation folders.",
        (("evaluation",), {"help": "folder written by `meddiff evaluate-lesions`"}),
        (("inpainting",), {"help": "folder written by `meddiff evaluate-inpainting`"}),
        (("judge",), {"help": "JSON written by `meddiff train-judge`"}),
        (("results",), {"help": "results/<run> folder"}),
    )
    return parser


def set_threads(n: int) -> None:
    """Use ``n`` CPU threads in torch, BLAS/OpenMP and SimpleITK, so that a job uses the cores Snakemake gave
    it and jobs running side by side do not oversubscribe the machine. Set through the environment, which
    torch (OMP_NUM_THREADS) and SimpleITK read when first imported, so data commands that never import torch
    do not pay for importing it."""
    import os
    import sys

    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"):
        os.environ[var] = str(n)
    if "torch" in sys.modules:  # already imported (e.g. main() called in-process): tell it directly
        sys.modules["torch"].set_num_threads(n)
    if "SimpleITK" in sys.modules:
        sys.modules["SimpleITK"].ProcessObject.SetGlobalDefaultNumberOfThreads(n)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.threads:
        set_threads(args.threads)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        args.func(args)
    except MeddiffError as err:
        print(f"meddiff {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"meddiff {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
