"""Zero-shot anomaly detection (paper 3.4.2): the map of eq. 9, masking, and the task on synthetic livers."""

import numpy as np
import pytest
import torch

from meddiff.config import AnomalyConfig, ModelConfig, SamplingConfig, Window
from meddiff.data.anomaly_cases import AnomalyCase
from meddiff.diffusion.schedule import make_scheduler
from meddiff.errors import ConfigError, GeometryError, InputImageError
from meddiff.labels import BODY, class_index
from meddiff.metrics.anomaly import dataset_max, evaluate_anomaly
from meddiff.tasks.anomaly import (
    anatomy_condition,
    anomaly_map,
    anomaly_map_for_case,
    organ_mask_from_labels,
    run_anomaly_task,
    smooth_map,
    write_anomaly_maps,
)

LIVER = class_index()["liver"]
ALPHAS = make_scheduler(1000, "cosine", "epsilon").alphas_cumprod
CFG = AnomalyConfig(dataset="demo", timestep=950, organ="liver", smoothing_sigma_mm=0.0, threshold=0.5, cases=0, slices_per_volume=0, remove_organ_offset=False)
ABDOMEN = Window(60, 360)


def _phantom_liver(seed: int, lesion: bool, shape=(12, 24, 24)):
    """(healthy image, image, labels, lesion mask): body 0.0 in a -1 air box, liver ellipsoid 0.3 with texture,
    optional hypodense sphere (-0.3) of radius 3 inside the liver."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    body = ((y - 12) / 11) ** 2 + ((x - 12) / 11) ** 2 <= 1
    liver = ((z - 6) / 5) ** 2 + ((y - 12) / 7) ** 2 + ((x - 11) / 8) ** 2 <= 1
    healthy = np.where(body, 0.0, -1.0) + np.where(liver, 0.3 + 0.03 * rng.standard_normal(shape), 0.0)
    labels = np.where(liver, LIVER, np.where(body, BODY, 0)).astype(np.uint8)
    lesion_mask = np.zeros(shape, bool)
    if lesion:
        cz, cy, cx = 6 + rng.integers(-1, 2), 12 + rng.integers(-2, 3), 11 + rng.integers(-2, 3)
        lesion_mask = ((z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2 <= 9) & liver
    image = np.where(lesion_mask, -0.3, healthy).astype(np.float32)
    return healthy.astype(np.float32), image, labels, lesion_mask


def _oracle_eps_fn(healthy_masked: np.ndarray, error_std: float, seed: int):
    """ε_θ of a model that "knows" the healthy organ: its one-step x̂_0 is the healthy image plus an error."""
    err = torch.from_numpy(np.random.default_rng(seed).normal(0, error_std, healthy_masked.shape).astype(np.float32))
    target = torch.from_numpy(healthy_masked)[None, None] + err

    def eps_fn(x_t, t):
        a = float(ALPHAS[t])
        return (x_t - a**0.5 * target) / (1 - a) ** 0.5

    return eps_fn


def _masked(image, organ):
    return np.where(organ, image, -1.0).astype(np.float32)


# ---------------------------------------------------------------- the map itself (eqs. 1, 9)
def test_true_noise_gives_a_zero_map():
    # If ε_θ returned exactly the noise that was added, eq. 9 recovers x̃_0 and the map vanishes: checks the
    # forward noising, the inversion and that ``seed`` selects the noise.
    _, image, labels, _ = _phantom_liver(0, lesion=True)
    organ = organ_mask_from_labels(labels, [LIVER])
    noise = torch.randn((1, 1, *image.shape), generator=torch.Generator().manual_seed(7))
    amap = anomaly_map(lambda x_t, t: noise, image, organ, ALPHAS, timestep=950, seed=7, remove_organ_offset=False)
    assert amap.shape == image.shape and amap.dtype == np.float32
    assert np.abs(amap).max() < 1e-3
    wrong_seed = anomaly_map(lambda x_t, t: noise, image, organ, ALPHAS, timestep=950, seed=8, remove_organ_offset=False)
    assert wrong_seed[organ].mean() > 0.1


def test_removing_the_organ_offset_keeps_the_lesion_and_drops_a_brightness_error():
    """A reconstruction of the healthy liver that is 0.2 too dark everywhere: the plain map is >= 0.2 on the
    whole liver; without the organ's median offset, only the lesion stands out."""
    healthy, image, labels, lesion = _phantom_liver(3, lesion=True)
    organ = organ_mask_from_labels(labels, [LIVER])
    darker = _masked(np.where(organ, healthy - 0.2, healthy), organ)
    eps_fn = _oracle_eps_fn(darker, 0.0, seed=0)
    plain = anomaly_map(eps_fn, image, organ, ALPHAS, timestep=950, seed=2, remove_organ_offset=False)
    fixed = anomaly_map(eps_fn, image, organ, ALPHAS, timestep=950, seed=2, remove_organ_offset=True)
    assert plain[organ & ~lesion].min() > 0.19
    np.testing.assert_allclose(fixed, np.where(organ, np.abs(image - healthy), 0.0), atol=2e-3)
    assert fixed[lesion].min() > 0.5 and not fixed[~organ].any()


def test_model_sees_the_masked_image_noised_at_the_fixed_timestep():
    _, image, labels, _ = _phantom_liver(1, lesion=True)
    organ = organ_mask_from_labels(labels, [LIVER])
    seen = {}

    def recording_eps(x_t, t):
        seen["x_t"], seen["t"] = x_t.clone(), t
        return torch.zeros_like(x_t)

    amap = anomaly_map(recording_eps, image, organ, ALPHAS, timestep=950, seed=3, remove_organ_offset=False)
    assert seen["t"] == 950
    a = float(ALPHAS[950])
    noise = torch.randn((1, 1, *image.shape), generator=torch.Generator().manual_seed(3))
    x0_seen = ((seen["x_t"] - (1 - a) ** 0.5 * noise) / a**0.5)[0, 0].numpy()
    np.testing.assert_allclose(x0_seen[organ], image[organ], atol=1e-4)  # the organ as it is
    np.testing.assert_allclose(x0_seen[~organ], -1.0, atol=1e-4)  # body and air replaced by air (-1)
    # With ε_θ = 0, eq. 9 gives x̂_0 = clip(x_t / sqrt(ᾱ_t)); the map is |x̃_0 - x̂_0| inside, 0 outside.
    x0_hat = np.clip(seen["x_t"][0, 0].numpy() / a**0.5, -1, 1)
    np.testing.assert_allclose(amap[organ], np.abs(image - x0_hat)[organ], atol=1e-4)
    assert not amap[~organ].any()


def test_same_seed_same_map():
    _, image, labels, _ = _phantom_liver(2, lesion=False)
    organ = organ_mask_from_labels(labels, [LIVER])
    zero = lambda x_t, t: torch.zeros_like(x_t)  # noqa: E731
    a = anomaly_map(zero, image, organ, ALPHAS, timestep=900, seed=5, remove_organ_offset=False)
    np.testing.assert_array_equal(a, anomaly_map(zero, image, organ, ALPHAS, timestep=900, seed=5, remove_organ_offset=False))
    assert not np.array_equal(a, anomaly_map(zero, image, organ, ALPHAS, timestep=900, seed=6, remove_organ_offset=False))


def test_bad_inputs_are_rejected_with_clear_errors():
    _, image, labels, _ = _phantom_liver(3, lesion=False)
    organ = organ_mask_from_labels(labels, [LIVER])
    zero = lambda x_t, t: torch.zeros_like(x_t)  # noqa: E731
    with pytest.raises(GeometryError, match="case7.*organ mask shape"):
        anomaly_map(zero, image, organ[:, :-1], ALPHAS, timestep=950, seed=0, name="case7", remove_organ_offset=False)
    with pytest.raises(InputImageError, match="organ mask is empty"):
        anomaly_map(zero, image, np.zeros_like(organ), ALPHAS, timestep=950, seed=0, remove_organ_offset=False)
    with pytest.raises(InputImageError, match=r"outside \[-1, 1\]"):
        anomaly_map(zero, image * 500, organ, ALPHAS, timestep=950, seed=0, remove_organ_offset=False)  # HU passed by mistake
    with pytest.raises(ConfigError, match="anomaly.timestep"):
        anomaly_map(zero, image, organ, ALPHAS, timestep=1000, seed=0, remove_organ_offset=False)


def test_organ_mask_fills_an_unlabelled_tumour_and_anatomy_is_organ_in_air():
    _, _, labels, _ = _phantom_liver(4, lesion=False)
    z, y, x = np.indices(labels.shape)
    lesion = (z - 6) ** 2 + (y - 12) ** 2 + (x - 11) ** 2 <= 4  # enclosed by the liver
    labels[lesion] = 0  # a segmentation that leaves the tumour out
    organ = organ_mask_from_labels(labels, [LIVER])
    assert organ[lesion].all()
    anatomy = anatomy_condition(labels, organ, [LIVER])
    assert (anatomy[organ] == LIVER).all()  # the tumour is "healthy liver" for the model
    assert (anatomy[~organ] == 0).all()  # body and air become background, like the -1 of the masked image


def test_smoothing_is_off_at_zero_and_keeps_the_organ_border_level():
    organ = np.zeros((9, 9, 9), bool)
    organ[2:7, 2:7, 2:7] = True
    amap = np.where(organ, 1.0, 0.0).astype(np.float32)
    np.testing.assert_array_equal(smooth_map(amap, organ, 0.0, (1, 1, 1)), amap)
    smoothed = smooth_map(amap, organ, 2.0, (1, 1, 2))
    np.testing.assert_allclose(smoothed[organ], 1.0, atol=1e-6)  # normalised convolution: no dark rim
    assert not smoothed[~organ].any()


# ---------------------------------------------------------------- the task on synthetic livers
def _cases(n_healthy=2, n_lesioned=3):
    cases, healthy = [], {}
    for i in range(n_healthy + n_lesioned):
        h, image, labels, lesion = _phantom_liver(10 + i, lesion=i >= n_healthy)
        name = f"syn{i}"
        cases.append(AnomalyCase(name, image, labels, lesion, (5.0, 5.0, 5.0), ABDOMEN, "abdomen"))
        healthy[name] = h
    return cases, healthy


def _oracle_map_fn(healthy: dict, error_std: float, reconstruct_lesion: bool = False):
    def map_fn(case, seed):
        organ = organ_mask_from_labels(case.labels, [LIVER])
        target = case.image if reconstruct_lesion else healthy[case.case]
        eps_fn = _oracle_eps_fn(_masked(target, organ), error_std, seed)
        return anomaly_map(eps_fn, case.image, organ, ALPHAS, timestep=CFG.timestep, seed=seed, name=case.case, remove_organ_offset=False)

    return map_fn


def test_task_with_a_healthy_oracle_finds_the_tumours():
    cases, healthy = _cases()
    # The oracle's reconstruction error (std 0.15) is of the order of the liver texture; the tumour differs by 0.6.
    out = run_anomaly_task(cases, _oracle_map_fn(healthy, error_std=0.15), CFG, seed=0)
    table, summary = evaluate_anomaly([c.case for c in out.cases], out.maps, [c.lesion_mask for c in cases],
                                      out.organ_masks, CFG.threshold)
    assert summary["pixel_auroc"] > 0.95
    assert summary["image_auroc"] > 0.9
    assert summary["pro"] > 0.9
    assert summary["dice"] > 0.5
    assert list(table["case"]) == [c.case for c in cases]
    assert table["pixel_auroc"].isna().tolist() == [True, True, False, False, False]  # healthy cases: NaN
    assert all(not m[~o].any() for m, o in zip(out.maps, out.organ_masks))


def test_task_with_an_oracle_that_reconstructs_the_tumour_finds_nothing():
    # Negative control: a model that reproduces the lesion ("not healthy") leaves only its error in the map,
    # so detection falls to chance -- the metrics measure the reconstruction, not the set-up.
    cases, healthy = _cases()
    out = run_anomaly_task(cases, _oracle_map_fn(healthy, 0.08, reconstruct_lesion=True), CFG, seed=0)
    _, summary = evaluate_anomaly([c.case for c in cases], out.maps, [c.lesion_mask for c in cases],
                                  out.organ_masks, CFG.threshold)
    assert 0.35 < summary["pixel_auroc"] < 0.65


def test_written_maps_score_as_in_memory_and_figure_shows_the_largest_lesion_slice(tmp_path):
    from meddiff.evaluation.anomaly import evaluate_anomaly_task

    cases, healthy = _cases()
    out = run_anomaly_task(cases, _oracle_map_fn(healthy, 0.08), CFG, seed=0)
    write_anomaly_maps(out, tmp_path / "maps.npz")
    summary = evaluate_anomaly_task(tmp_path / "maps.npz", tmp_path / "a.csv", tmp_path / "a.npz", threshold=0.5,
                                    dataset="demo")  # fmt: skip
    _, expected = evaluate_anomaly([c.case for c in cases], out.maps, [c.lesion_mask for c in cases],
                                   out.organ_masks, 0.5)  # fmt: skip
    assert summary == expected
    with np.load(tmp_path / "a.npz") as fig:
        areas = {c.case: c.lesion_mask.sum(axis=(1, 2)).max() for c in cases}
        assert str(fig["case"]) == max(areas, key=areas.get)
        case = next(c for c in cases if c.case == str(fig["case"]))
        assert fig["anomaly_map"].max() <= 1.0 and tuple(fig["window"]) == (-120.0, 240.0)
        assert fig["image_hu"].min() == pytest.approx(-120.0)  # air at -1 -> lower window bound
        assert fig["image_hu"].shape == fig["lesion_mask"].shape == case.image.shape
    healthy_only = run_anomaly_task(cases[:2], _oracle_map_fn(healthy, 0.08), CFG, seed=0)
    write_anomaly_maps(healthy_only, tmp_path / "healthy.npz")
    evaluate_anomaly_task(tmp_path / "healthy.npz", tmp_path / "h.csv", tmp_path / "h.npz", threshold=0.5,
                          dataset="demo")  # fmt: skip
    with np.load(tmp_path / "h.npz") as fig:
        assert "image_hu" not in fig.files


def test_anomaly_map_for_case_runs_a_real_network_through_the_sliding_window():
    from meddiff.diffusion.checkpoint import LoadedModel
    from meddiff.models.network import MedDiffUNet

    torch.manual_seed(0)
    model_cfg = ModelConfig(patch_size=(8, 16, 16), channels=(8, 16), attention_levels=(False, False),
                            num_res_blocks=1, num_head_channels=8, norm_num_groups=4, anatomy_embedding_dim=4,
                            position_frequencies=2)
    loaded = LoadedModel(MedDiffUNet(model_cfg, "coords").eval(), 1000, "cosine", {}, "epsilon")
    sampling = SamplingConfig(sampler="ddim", steps=10, overlap=0.25, patch_batch_size=4, blend="gaussian", precision="fp32")
    _, image, labels, _ = _phantom_liver(20, lesion=True)
    kwargs = dict(cfg=CFG, sampling=sampling, patch_size=(8, 16, 16), spacing=(5.0, 5.0, 5.0), device="cpu", seed=1)
    amap = anomaly_map_for_case(loaded, image, labels, [LIVER], "abdomen", **kwargs)
    organ = organ_mask_from_labels(labels, [LIVER])
    assert amap.shape == image.shape and np.isfinite(amap).all()
    assert amap[organ].max() > 0 and not amap[~organ].any()
    np.testing.assert_array_equal(amap, anomaly_map_for_case(loaded, image, labels, [LIVER], "abdomen", **kwargs))
    with pytest.raises(InputImageError, match="no voxel of the organ"):
        anomaly_map_for_case(loaded, image, np.zeros_like(labels), [LIVER], "abdomen", **kwargs)


def test_condition_label_replaces_the_organ_class_the_model_never_saw(monkeypatch):
    """A model trained on threshold masks knows the liver only as ``body``: that is what it must be given."""
    from meddiff.diffusion.checkpoint import LoadedModel
    from meddiff.labels import BODY
    from meddiff.tasks import anomaly as anomaly_mod

    seen = {}

    def spy_eps_fn(loaded, anatomy, region, **kwargs):
        seen["anatomy"] = np.asarray(anatomy)
        return lambda x_t, t: torch.zeros_like(x_t)

    monkeypatch.setattr(anomaly_mod, "model_output_fn", spy_eps_fn)
    _, image, labels, _ = _phantom_liver(20, lesion=True)
    sampling = SamplingConfig(sampler="ddim", steps=10, overlap=0.25, patch_batch_size=4, blend="gaussian", precision="fp32")
    kwargs = dict(cfg=CFG, sampling=sampling, patch_size=(8, 16, 16), spacing=(5.0, 5.0, 5.0), device="cpu", seed=1)
    loaded = LoadedModel(None, 1000, "cosine", {}, "epsilon")
    organ = organ_mask_from_labels(labels, [LIVER])
    anomaly_map_for_case(loaded, image, labels, [LIVER], "abdomen", **kwargs)
    assert set(np.unique(seen["anatomy"][organ])) <= {LIVER}
    anomaly_map_for_case(loaded, image, labels, [LIVER], "abdomen", condition_label=BODY, **kwargs)
    assert set(np.unique(seen["anatomy"][organ])) == {BODY} and not seen["anatomy"][~organ].any()


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_anomaly_map_for_case_reads_the_output_as_the_models_prediction_type(monkeypatch, prediction):
    """A network that outputs the exact ε (or v) of the healthy organ gives the map |image - healthy|, whichever
    it predicts: the output is converted by the prediction type stored with the model."""
    from meddiff.diffusion.checkpoint import LoadedModel
    from meddiff.tasks import anomaly as anomaly_mod

    healthy, image, labels, lesion = _phantom_liver(21, lesion=True)
    organ = organ_mask_from_labels(labels, [LIVER])
    target = torch.from_numpy(_masked(healthy, organ))[None, None]

    def oracle_output_fn(loaded, anatomy, region, **kwargs):
        def output(x_t, t):
            a = float(ALPHAS[t])
            eps = (x_t - a**0.5 * target) / (1 - a) ** 0.5
            return eps if prediction == "epsilon" else a**0.5 * eps - (1 - a) ** 0.5 * target

        return output

    monkeypatch.setattr(anomaly_mod, "model_output_fn", oracle_output_fn)
    sampling = SamplingConfig(sampler="ddim", steps=10, overlap=0.25, patch_batch_size=4, blend="gaussian", precision="fp32")
    loaded = LoadedModel(None, 1000, "cosine", {}, prediction=prediction)
    amap = anomaly_map_for_case(loaded, image, labels, [LIVER], "abdomen", cfg=CFG, sampling=sampling,
                                patch_size=(8, 16, 16), spacing=(5.0, 5.0, 5.0), device="cpu", seed=1)
    expected = np.where(organ, np.abs(image - healthy), 0.0)
    np.testing.assert_allclose(amap, expected, atol=1e-3)
    assert amap[lesion].min() > 0.5
