"""The tiny MedDiffUNet architecture the unit tests share (importable because tests/conftest.py puts
tests/ on sys.path)."""

from meddiff.config import ModelConfig

TINY_MODEL = ModelConfig(
    patch_size=(16, 16, 16),
    channels=(8, 16),
    attention_levels=(False, True),
    num_res_blocks=1,
    num_head_channels=8,
    norm_num_groups=4,
    anatomy_embedding_dim=4,
    position_frequencies=2,
)
