"""The supervised reference: the same image tower with a multi-label head over the 14 findings.

`--config=configs/supervised.py:tiny`. It trains with binary cross-entropy on the report
labels of the same pool (positive and uncertain as 1), so its test AUROC is what this image
tower learns from these images with labels instead of reports: the ceiling the CLIP arms'
zero-shot AUROC is read against. The quickstart gives it the full-data arm's FLOPs
(`total_flops`); its text tower is built but never trained.
"""

from chexficient.findings import NUM_FINDINGS
from pretrain.config import base_config


def get_config(arg: str | None = None):
    c = base_config(arg)
    c.loss = "supervised"
    c.model.classes = NUM_FINDINGS
    c.data.text_augment.enabled = False  # the reports are not read
    return c
