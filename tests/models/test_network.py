"""The ε-network: output shape, conditions reach the output, NULL_LABEL, rebuild from its JSON."""

from __future__ import annotations

import json

import pytest
import torch

from tiny_network import TINY_MODEL

from meddiff.labels import NULL_LABEL
from meddiff.models.network import MedDiffUNet, build_from_architecture

CONFIG = TINY_MODEL


@pytest.fixture(autouse=True)
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def inputs(batch=2, shape=(16, 16, 16), seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(
        x_t=torch.randn(batch, 1, *shape, generator=g),
        timesteps=torch.randint(0, 1000, (batch,), generator=g),
        anatomy=torch.randint(0, 119, (batch, *shape), generator=g),
        region=torch.randint(0, 3, (batch,), generator=g),
        coords=torch.rand(batch, 3, *shape, generator=g) * 2 - 1,
    )


def network(position="embedding", seed=0):
    """A network whose zero-initialised layers (MONAI zeroes the output and residual-out convolutions, so a
    fresh network outputs 0 whatever its input) get random weights, as training would give them."""
    torch.manual_seed(seed)
    net = MedDiffUNet(CONFIG, position).eval()
    with torch.no_grad():
        for parameter in net.parameters():
            if not parameter.any():
                parameter.normal_(0.0, 0.05)
    return net


@pytest.mark.parametrize("position", ["none", "coords", "embedding"])
def test_output_has_the_input_shape(position):
    with torch.no_grad():
        eps = network(position)(**inputs())
    assert eps.shape == (2, 1, 16, 16, 16) and torch.isfinite(eps).all()


def test_volumes_larger_than_the_patch_also_pass():
    with torch.no_grad():
        assert network()(**inputs(batch=1, shape=(16, 24, 32))).shape == (1, 1, 16, 24, 32)


def test_null_label_is_a_valid_anatomy_and_differs_from_background():
    net = network()
    x = inputs(batch=1)
    with torch.no_grad():
        null = net(**dict(x, anatomy=torch.full_like(x["anatomy"], NULL_LABEL)))
        background = net(**dict(x, anatomy=torch.zeros_like(x["anatomy"])))
    assert torch.isfinite(null).all()
    assert not torch.allclose(null, background)
    with pytest.raises(IndexError):
        net(**dict(x, anatomy=torch.full_like(x["anatomy"], NULL_LABEL + 1)))


def test_region_and_position_conditions_reach_the_output():
    net = network("embedding")
    x = inputs(batch=1)
    with torch.no_grad():
        base = net(**x)
        other_region = net(**dict(x, region=(x["region"] + 1) % 3))
        other_place = net(**dict(x, coords=-x["coords"]))
    assert not torch.allclose(base, other_region)
    assert not torch.allclose(base, other_place)
    # without position conditioning the coordinates are ignored
    plain = network("none")
    with torch.no_grad():
        assert torch.equal(plain(**x), plain(**dict(x, coords=-x["coords"])))


@pytest.mark.parametrize("position", ["none", "coords", "embedding"])
def test_rebuild_from_architecture_json_gives_identical_outputs(position):
    original = network(position, seed=1)
    architecture = json.loads(json.dumps(original.architecture()))  # as read back from architecture.json
    rebuilt = build_from_architecture(architecture).eval()
    rebuilt.load_state_dict(original.state_dict())
    assert rebuilt.model_config == CONFIG and rebuilt.position == position
    with torch.no_grad():
        assert torch.equal(original(**inputs()), rebuilt(**inputs()))
