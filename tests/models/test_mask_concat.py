import torch

from meddiff.models.mask_concat import MaskConcatUNet, build_mask_concat
from tiny_network import TINY_MODEL


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((2, 1, 16, 16, 16), generator=g)
    anatomy = torch.randint(0, 5, (2, 16, 16, 16), generator=g)
    coords = torch.rand((2, 3, 16, 16, 16), generator=g) * 2 - 1
    return x, torch.tensor([10, 500]), anatomy, torch.tensor([0, 2]), coords


def test_output_changes_with_the_masks():
    torch.manual_seed(0)
    net = MaskConcatUNet(TINY_MODEL, "coords", control_channels=1).eval()
    for p in net.unet.out.parameters():  # MONAI zero-initialises the output conv: give it weights, as training would
        torch.nn.init.normal_(p, std=0.1)
    x, t, anatomy, region, coords = _inputs()
    empty = torch.zeros((2, 1, 16, 16, 16))
    lesion = empty.clone()
    lesion[:, :, 4:10, 4:10, 4:10] = 1.0
    with torch.no_grad():
        a = net(x, t, anatomy, region, coords, empty)
        b = net(x, t, anatomy, region, coords, lesion)
        again = net(x, t, anatomy, region, coords, empty)
    assert a.shape == (2, 1, 16, 16, 16)
    assert torch.equal(a, again)
    assert (a - b).abs().max() > 1e-3


def test_architecture_round_trip():
    net = MaskConcatUNet(TINY_MODEL, "embedding", control_channels=2)
    rebuilt = build_mask_concat(net.architecture())
    rebuilt.load_state_dict(net.state_dict())
    assert rebuilt.control_channels == 2 and rebuilt.position == "embedding"
