import dataclasses

import pytest
import torch

from meddiff.errors import ConfigError
from meddiff.models.controlnet import ControlledMedDiff, build_controlnet, build_network
from meddiff.models.network import MedDiffUNet
from tiny_network import TINY_MODEL


def _foundation(seed=0) -> MedDiffUNet:
    torch.manual_seed(seed)
    net = MedDiffUNet(TINY_MODEL, "coords")
    for p in net.unet.out.parameters():  # MONAI zero-initialises the output conv: give it weights, as training would
        torch.nn.init.normal_(p, std=0.1)
    return net.eval()


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((2, 1, 16, 16, 16), generator=g)
    anatomy = torch.randint(0, 5, (2, 16, 16, 16), generator=g)
    coords = torch.rand((2, 3, 16, 16, 16), generator=g) * 2 - 1
    control = torch.rand((2, 1, 16, 16, 16), generator=g)
    return x, torch.tensor([10, 500]), anatomy, torch.tensor([0, 2]), coords, control


def test_zero_initialised_controlnet_leaves_the_foundation_output_bit_identical():
    base = _foundation()
    x, t, anatomy, region, coords, control = _inputs()
    with torch.no_grad():
        expected = base(x, t, anatomy, region, coords)
        got = ControlledMedDiff(base, 1)(x, t, anatomy, region, coords, control)
    assert torch.equal(got, expected)


def test_trainable_copy_starts_from_the_foundation_weights():
    base = _foundation()
    controlnet = build_controlnet(base, 1)
    unet = base.unet.state_dict()
    copied = [k for k in controlnet.state_dict() if k in unet]
    assert any(k.startswith("down_blocks.") for k in copied) and any(k.startswith("middle_block.") for k in copied)
    for k in copied:
        assert torch.equal(controlnet.state_dict()[k], unet[k]), k


def test_a_controlnet_that_does_not_match_the_unet_is_refused():
    base = _foundation()
    base.model_config = dataclasses.replace(TINY_MODEL, num_res_blocks=2)  # what the ControlNet is built from
    with pytest.raises(ConfigError, match="does not match"):
        build_controlnet(base, 1)


def test_fine_tuning_trains_the_controlnet_only_and_then_follows_the_condition():
    base = _foundation()
    frozen = {k: v.clone() for k, v in base.state_dict().items()}
    net = ControlledMedDiff(base, 1).train()
    assert not base.training and all(not p.requires_grad for p in base.parameters())
    optimizer = torch.optim.Adam(net.trainable().parameters(), lr=1e-2)
    x, t, anatomy, region, coords, control = _inputs()
    for _ in range(3):
        optimizer.zero_grad()
        loss = (net(x, t, anatomy, region, coords, control) - control).abs().mean()
        loss.backward()
        optimizer.step()
    for k, v in base.state_dict().items():
        assert torch.equal(v, frozen[k]), f"foundation weight {k} changed"
    net.eval()
    with torch.no_grad():
        a = net(x, t, anatomy, region, coords, control)
        b = net(x, t, anatomy, region, coords, torch.zeros_like(control))
    assert (a - b).abs().max() > 1e-4


def test_architecture_round_trip_and_condition_shape_check():
    net = ControlledMedDiff(_foundation(), 2)
    rebuilt = build_network(net.architecture())
    assert isinstance(rebuilt, ControlledMedDiff) and rebuilt.control_channels == 2
    rebuilt.load_state_dict(net.state_dict())
    assert isinstance(build_network(_foundation().architecture()), MedDiffUNet)
    x, t, anatomy, region, coords, control = _inputs()
    with pytest.raises(ValueError, match="control"):
        rebuilt(x, t, anatomy, region, coords, control)  # one channel given, two expected
