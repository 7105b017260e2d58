"""Full-data CLIP pretraining: `--config=configs/pretrain.py:tiny` (or small, base).

Arguments after the preset override its values, e.g. `:tiny,batch_size=64,epochs=2`.
"""

from pretrain.config import base_config


def get_config(arg: str | None = None):
    return base_config(arg)
