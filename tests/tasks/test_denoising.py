"""The denoising task: sigma_n, metrics in the evaluation window, case building, orchestration, baselines."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import torch

from meddiff.config import DenoisingConfig, ModelConfig, PreprocessConfig, SamplingConfig, SplitConfig, Window
from meddiff.data.intensity import hu_to_unit
from meddiff.data.manifest import build_manifest
from meddiff.data.preprocess import preprocess_case
from meddiff.diffusion.checkpoint import save_model
from meddiff.diffusion.schedule import make_scheduler
from meddiff.errors import ConfigError, GeometryError
from meddiff.labels import BODY, NULL_LABEL
from meddiff.models.network import MedDiffUNet
from meddiff.evaluation.denoising import evaluate_denoising, evaluate_denoising_task, table5
from meddiff.reporting.paper_results import SOURCE_PAPER, table5_rows
from meddiff.tasks.denoising import (
    LDCT,
    MEDDIFF_FM,
    calibrate_noise,
    denoise_case,
    estimate_sigma_n,
    meddiff_fm_denoise,
    model_output_fn,
    restore_out_of_window,
    run_denoising_task,
)
from meddiff.tasks.denoising_baselines import bm3d_denoise, nlm_denoise
from meddiff.tasks.denoising_cases import DenoisingCase, crop_hu, simulated_cases_from_manifest
from meddiff.tasks.lowdose import simulate_pair

WINDOWS = {"chest": Window(-500.0, 1800.0), "abdomen": Window(60.0, 360.0)}
EVAL = (-160.0, 240.0)


def _cfg(**kw) -> DenoisingConfig:
    base = dict(
        dataset="phantom",
        dose_fraction=0.25,
        incident_photons=1.5e5,
        sigma_n=None,
        lam=10.0,
        steps=5,
        window=EVAL,
        cases=0,
        zeta=0.0,
        test_patients=["L506"],
    )
    return DenoisingConfig(**{**base, **kw})


def _phantom_hu(slices: int = 4, n: int = 40) -> np.ndarray:
    """A small abdomen-like slab at 5 mm: fat ring, soft tissue, a bright organ and bone, air outside."""
    yy, xx = (np.mgrid[:n, :n] - n / 2 + 0.5) * 5.0
    hu = np.full((n, n), -1000.0)
    hu[(xx / 90) ** 2 + (yy / 70) ** 2 < 1] = -100.0
    hu[(xx / 75) ** 2 + (yy / 55) ** 2 < 1] = 40.0
    hu[(xx - 25) ** 2 + (yy + 10) ** 2 < 20**2] = 120.0
    hu[xx**2 + (yy - 40) ** 2 < 8**2] = 700.0
    return np.repeat(hu[None], slices, axis=0)


def _sim_case(name="c1", split="test", seed=0, slices=4) -> DenoisingCase:
    hu = _phantom_hu(slices)
    full, low = simulate_pair(hu, 5.0, incident_photons=5e4, dose_fraction=0.25, seed=seed)  # ~25 HU on this small body
    anatomy = np.where(hu > -500, BODY, 0).astype(np.uint8)
    return DenoisingCase(name, "abdomen", split, full, low, anatomy, (5.0, 5.0, 5.0), "test phantom")


def _psnr_gain(case: DenoisingCase, method_hu: np.ndarray) -> float:
    return evaluate_denoising(case.full_hu, case.low_hu, {"m": method_hu}, window=EVAL)["m"]["delta_psnr"]


# ---------------------------------------------------------------- sigma_n


def test_sigma_n_is_std_of_low_minus_full_inside_the_body():
    rng = np.random.default_rng(0)
    full = rng.uniform(-1, 1, (8, 20, 20))
    mask = np.zeros(full.shape, bool)
    mask[:, 5:15, 5:15] = True
    low = full + np.where(mask, rng.normal(0, 0.15, full.shape), rng.normal(0, 3.0, full.shape))
    assert estimate_sigma_n([(low, full)], [mask]) == pytest.approx(0.15, rel=0.05)
    with pytest.raises(GeometryError):
        estimate_sigma_n([(low, full[:-1])], [mask])
    # pooled over pairs: a second, noise-free pair halves the variance
    assert estimate_sigma_n([(low, full), (full, full)], [mask, mask]) == pytest.approx(0.15 / np.sqrt(2), rel=0.05)


def test_calibration_is_per_region_in_model_units_and_refuses_test_cases():
    calib = [_sim_case("a", "train", 1), _sim_case("b", "val", 2)]
    levels = calibrate_noise(calib, WINDOWS, _cfg())
    lvl = levels["abdomen"]
    assert lvl.n_cases == 2
    # ~25 HU quarter-dose noise in a 360 HU window: sigma_n in [-1, 1] units = HU std / 180 (clipping lowers it)
    assert 10 < lvl.sigma_hu < 40 and 0.5 * lvl.sigma_hu / 180 < lvl.sigma_n <= 1.05 * lvl.sigma_hu / 180
    assert calibrate_noise(calib, WINDOWS, _cfg(sigma_n=0.2))["abdomen"].sigma_n == 0.2
    with pytest.raises(ConfigError, match="test case"):
        calibrate_noise([_sim_case("t", "test")], WINDOWS, _cfg())


# ---------------------------------------------------------------- evaluation


def test_evaluation_in_the_window_with_improvements_over_ldct():
    case = _sim_case()
    better = 0.5 * (case.low_hu + case.full_hu)
    scores = evaluate_denoising(case.full_hu, case.low_hu, {"half-way": better}, window=EVAL)
    assert list(scores) == [LDCT, "half-way"]
    assert scores[LDCT]["delta_psnr"] == 0.0 and scores[LDCT]["delta_ssim"] == 0.0
    s = scores["half-way"]
    assert s["psnr"] > scores[LDCT]["psnr"] and s["ssim"] > scores[LDCT]["ssim"]
    assert s["delta_psnr"] == pytest.approx(s["psnr"] - scores[LDCT]["psnr"])
    # errors outside the window do not count: push air (< -160 HU) around freely
    outside = np.where(case.full_hu < -400, better - 300.0, better)
    assert evaluate_denoising(case.full_hu, case.low_hu, {"m": outside}, window=EVAL)["m"]["psnr"] == pytest.approx(
        s["psnr"]
    )
    with pytest.raises(GeometryError):
        evaluate_denoising(case.full_hu, case.low_hu, {"m": better[:, :-1]}, window=EVAL)


def test_cited_rows_are_table5_and_labelled():
    df = table5_rows()
    assert (df["source"] == SOURCE_PAPER).all()
    row = df.set_index("method").loc["MedDiff-FM"]
    assert (row["delta_psnr"], row["delta_ssim"]) == (4.19, 0.059)
    assert set(df["method"]) == {LDCT, "RED-CNN", "CTformer", "NLM", "BM3D", "Noise2Sim", "Dn-Dp", "MedDiff-FM"}
    assert df.set_index("method").loc[LDCT, "psnr"] == 23.10


# ---------------------------------------------------------------- MedDiff-FM path


def test_out_of_window_voxels_keep_the_low_dose_beyond_the_bound():
    w = Window(60.0, 360.0)  # [-120, 240]
    den = np.array([-1.0, 0.0, 1.0])
    low = np.array([-150.0, 10.0, 700.0])
    np.testing.assert_allclose(restore_out_of_window(den, low, w), [-150.0, 60.0, 700.0])
    np.testing.assert_allclose(restore_out_of_window(den, np.array([-100.0, 0.0, 100.0]), w), [-120.0, 60.0, 240.0])
    # far outside the window (air in the abdomen window) the low-dose HU is kept whatever the model says
    near_floor = np.array([-0.98, -0.98, 0.99])
    low = np.array([-1000.0, -130.0, 400.0])
    np.testing.assert_allclose(
        restore_out_of_window(near_floor, low, w, margin_hu=90.0), [-1000.0, -116.4, 400.0], rtol=1e-5
    )


def test_diffpir_with_an_oracle_prior_beats_ldct_in_the_evaluation_window():
    case = _sim_case()
    w = WINDOWS["abdomen"]
    abar = make_scheduler(1000, "cosine", "epsilon").alphas_cumprod
    x0 = torch.as_tensor(hu_to_unit(case.full_hu, w))[None, None]

    def oracle(x_t, t):
        a = float(abar[t])
        return (x_t - math.sqrt(a) * x0) / math.sqrt(1 - a)

    out = meddiff_fm_denoise(case.low_hu, oracle, abar, w, sigma_n=0.14, lam=10.0, steps=10, zeta=0.0, seed=0)
    assert out.shape == case.low_hu.shape and out.dtype == np.float32
    assert _psnr_gain(case, out) > 10.0


def _tiny_network() -> MedDiffUNet:
    torch.manual_seed(0)
    cfg = ModelConfig(
        patch_size=(16, 16, 16), channels=(8, 8), attention_levels=(False, False), num_res_blocks=1,
        num_head_channels=8, norm_num_groups=4, anatomy_embedding_dim=4, position_frequencies=2,
    )  # fmt: skip
    net = MedDiffUNet(cfg, "coords").eval()
    with torch.no_grad():  # MONAI zero-initialises the output convolution: give it weights so ε depends on the input
        for p in net.parameters():
            if not p.any():
                p.normal_(0.0, 0.05)
    return net


def test_denoise_case_runs_model_and_baselines_on_one_grid(tmp_path):
    case = _sim_case(slices=3)
    crop = (slice(None), slice(12, 28), slice(10, 28))  # (3, 16, 18): 2 windows of 16^3, one network call
    case = DenoisingCase(case.case, case.region, case.split, case.full_hu[crop], case.low_hu[crop],
                         case.anatomy[crop], case.spacing_mm, case.source)  # fmt: skip
    model_dir = save_model(tmp_path / "model", _tiny_network(), num_train_timesteps=1000, schedule="cosine", info={},
                           prediction="epsilon")  # fmt: skip
    sampling = SamplingConfig(sampler="ddim", steps=2, overlap=0.25, patch_batch_size=2, blend="gaussian", precision="fp32")
    out = denoise_case(
        model_dir, case.low_hu, case.full_hu, case.anatomy, "abdomen", WINDOWS["abdomen"], _cfg(steps=2),
        sampling, (16, 16, 16), 0.14, "cpu", 0,
    )  # fmt: skip
    assert set(out) == {MEDDIFF_FM, "NLM", "BM3D"}
    for arr in out.values():
        assert arr.shape == case.low_hu.shape and np.isfinite(arr).all()
    with pytest.raises(GeometryError):
        denoise_case(model_dir, case.low_hu, case.full_hu[:-1], None, "abdomen", WINDOWS["abdomen"], _cfg(),
                     sampling, (16, 16, 16), 0.14, "cpu", 0)  # fmt: skip


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_denoise_case_gives_diffpir_the_noise_estimate_of_either_prediction_type(tmp_path, monkeypatch, prediction):
    """The model's output (ε̂ or v̂ of a known image) reaches DiffPIR as ε̂, converted by the type stored with
    the model folder."""
    from meddiff.tasks import denoising as denoising_mod

    case = _sim_case(slices=3)
    shape = (1, 1, *case.low_hu.shape)
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.rand(shape, generator=g) * 2 - 1, torch.randn(shape, generator=g)
    abar = make_scheduler(1000, "cosine", "epsilon").alphas_cumprod

    def oracle_output_fn(network, anatomy, region, shape, **kwargs):
        def output(x_t, t):
            a = float(abar[t])
            return noise if prediction == "epsilon" else a**0.5 * noise - (1 - a) ** 0.5 * x0

        return output

    seen = {}

    def spy_denoise(low_hu, eps_fn, alphas_cumprod, window, **kwargs):
        t = 500
        a = float(alphas_cumprod[t])
        seen["eps"] = eps_fn(a**0.5 * x0 + (1 - a) ** 0.5 * noise, t)
        return low_hu

    monkeypatch.setattr(denoising_mod, "model_output_fn", oracle_output_fn)
    monkeypatch.setattr(denoising_mod, "meddiff_fm_denoise", spy_denoise)
    model_dir = save_model(tmp_path / prediction, _tiny_network(), num_train_timesteps=1000, schedule="cosine",
                           info={}, prediction=prediction)  # fmt: skip
    sampling = SamplingConfig(sampler="ddim", steps=2, overlap=0.25, patch_batch_size=2, blend="gaussian", precision="fp32")
    denoise_case(model_dir, case.low_hu, case.full_hu, None, "abdomen", WINDOWS["abdomen"], _cfg(), sampling,
                 (16, 16, 16), 0.14, "cpu", 0)  # fmt: skip
    torch.testing.assert_close(seen["eps"], noise, atol=1e-5, rtol=0)


def test_model_output_fn_without_anatomy_uses_the_null_label():
    net, shape = _tiny_network(), (8, 20, 20)
    sampling = SamplingConfig("ddim", 2, 0.25, 2, "gaussian", "fp32")
    x = torch.randn(1, 1, *shape, generator=torch.Generator().manual_seed(0))

    def eps(anatomy):
        return model_output_fn(net, anatomy, "chest", shape, patch_size=(16, 16, 16), sampling=sampling, device="cpu")(
            x, 10
        )

    e = eps(None)
    assert e.shape == (1, 1, *shape) and torch.isfinite(e).all()
    torch.testing.assert_close(e, eps(np.full(shape, NULL_LABEL, np.uint8)))
    assert not torch.allclose(e, eps(np.zeros(shape, np.uint8)))


# ---------------------------------------------------------------- baselines


def test_nlm_and_bm3d_improve_psnr_over_ldct():
    case = _sim_case(slices=3)
    sigma_hu = estimate_sigma_n([(case.low_hu, case.full_hu)], [case.body_mask()])
    assert _psnr_gain(case, nlm_denoise(case.low_hu, sigma_hu=sigma_hu, window=EVAL)) > 1.0
    assert _psnr_gain(case, bm3d_denoise(case.low_hu, sigma_hu=sigma_hu, window=EVAL)) > 1.0


# ---------------------------------------------------------------- cases from the training cache


def _cache_case(tmp_path: Path, name: str) -> Path:
    hu = _phantom_hu(slices=8)
    img = sitk.GetImageFromArray(hu.astype(np.float32))
    img.SetSpacing((5.0, 5.0, 5.0))
    mask = sitk.GetImageFromArray(np.where(hu > -500, BODY, 0).astype(np.uint8))
    mask.CopyInformation(img)
    src = tmp_path / "raw" / f"{name}.nii.gz"
    src.parent.mkdir(exist_ok=True)
    sitk.WriteImage(img, str(src))
    sitk.WriteImage(mask, str(src.with_name(f"{name}_mask.nii.gz")))
    pre = PreprocessConfig(
        (5.0, 5.0, 5.0), "linear", WINDOWS | {"han": Window(50.0, 400.0)}, 10.0
    )
    out = tmp_path / "cache" / name
    preprocess_case(
        src, src.with_name(f"{name}_mask.nii.gz"), out, case=name, dataset="phantom", regions=["abdomen"], cfg=pre
    )
    return out


def test_crop_hu_recovers_unclipped_hu_from_the_source(tmp_path):
    case_dir = _cache_case(tmp_path, "p0")
    hu, label, meta = crop_hu(case_dir, "abdomen")
    np.testing.assert_allclose(hu, _phantom_hu(slices=8), atol=1e-3)  # bone 700 and air -1000 survive
    assert label.shape == hu.shape
    Path(meta["source_image"]).unlink()
    clipped, _, _ = crop_hu(case_dir, "abdomen")  # fallback: the cache's window [-120, 240]
    assert clipped.min() == pytest.approx(-120.0) and clipped.max() == pytest.approx(240.0)


def test_simulated_cases_split_test_from_calibration(tmp_path):
    dirs = [_cache_case(tmp_path, f"p{i}") for i in range(4)]
    manifest = build_manifest(dirs, SplitConfig(0.5, 0.25, 0.25), seed=0)
    manifest["split"] = ["test", "train", "train", "val"]
    test, calib = simulated_cases_from_manifest(
        manifest, _cfg(cases=1), interpolation="linear", seed=0, calibration_per_region=2
    )
    assert [c.case for c in test] == ["p0"] and [c.split for c in calib] == ["train", "train"]
    assert test[0].full_hu.shape == test[0].low_hu.shape == test[0].anatomy.shape == (8, 40, 40)
    assert not np.array_equal(calib[0].low_hu - calib[0].full_hu, calib[1].low_hu - calib[1].full_hu)  # own seeds


# ---------------------------------------------------------------- orchestration


def test_run_task_rows_per_case_and_method_and_outputs(tmp_path):
    from scipy.ndimage import gaussian_filter

    tests = [_sim_case("t1", "test", 10), _sim_case("t2", "test", 11)]
    calib = [_sim_case("k1", "train", 12)]

    def fake(case, noise):
        assert noise.sigma_n > 0 and case.split == "test"
        return {"smooth": gaussian_filter(case.low_hu, 0.8).astype(np.float32)}

    cases = run_denoising_task(tests, calib, fake, tmp_path / "task", windows=WINDOWS, cfg=_cfg())
    assert list(cases["case"]) == ["t1", "t2"] and (cases["sigma_n"] > 0).all()
    assert "abdomen" in json.loads((tmp_path / "task" / "noise.json").read_text())
    with np.load(tmp_path / "task" / cases["volumes"][0]) as npz:
        assert set(npz.files) == {"full_hu", "low_hu", "smooth"} and npz["smooth"].dtype == np.float32
    df = evaluate_denoising_task(tmp_path / "task", tmp_path / "out", window=EVAL)
    assert len(df) == 4 and set(df["method"]) == {LDCT, "smooth"}
    assert {"case", "region", "psnr", "ssim", "delta_psnr", "delta_ssim", "sigma_n"} <= set(df.columns)
    smooth = {"smooth": gaussian_filter(tests[0].low_hu, 0.8).astype(np.float32)}
    expected = evaluate_denoising(tests[0].full_hu, tests[0].low_hu, smooth, window=EVAL)
    first = df[(df["case"] == "t1") & (df["method"] == "smooth")].iloc[0]
    assert first["psnr"] == pytest.approx(expected["smooth"]["psnr"], abs=1e-12)
    rows = table5(df)
    assert list(rows["method"]) == [LDCT, "smooth"] and list(rows["n_cases"]) == [2, 2]
    assert len(pd.read_csv(tmp_path / "out" / "metrics.csv")) == 4
    assert np.load(tmp_path / "out" / "fig6_slices.npz")["t2_abdomen/Full dose"].shape == (40, 40)
    with pytest.raises(ConfigError, match="no test case"):
        run_denoising_task(iter([]), iter(calib), fake, tmp_path / "t2", windows=WINDOWS, cfg=_cfg())
    with pytest.raises(ConfigError, match="sigma_n"):  # no calibration case of the region, sigma_n unset
        run_denoising_task(tests, [], fake, tmp_path / "t3", windows=WINDOWS, cfg=_cfg())
