"""JEST (Evans et al. 2024): joint, chunked learnability selection from a super-batch.

`--config=configs/jest.py:tiny --config.reference.path=REF_WORKDIR`. Learnability is the
learner's contrastive loss minus a frozen reference model's, computed jointly over the
sub-batch; `jest.filter_ratio` of each super-batch is filtered out. Without a reference
the reference loss is 0 and the rule picks the pairs the learner finds hardest.
"""

from pretrain.config import base_config


def get_config(arg: str | None = None):
    c = base_config(arg)
    c.curator.name = "jest"
    c.schedule.name = "continuous"
    return c
