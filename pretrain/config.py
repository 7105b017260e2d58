"""The pretraining config every experiment config starts from, with size presets.

big_vision style: `base_config("tiny,batch_size=64")` returns a readable ConfigDict; the
files under configs/ call it and add their curator and schedule.
"""

from __future__ import annotations

import ml_collections

import curation
import curation.offline
from chexficient.presets import parse_preset_arg

PRESETS: dict[str, dict] = {
    # Minutes on a 2-core CPU.
    "tiny": dict(dataset="synthetic_cxr/tiny", res=64, patch=8, width=128, depth=2, heads=4,
                 twidth=128, tdepth=2, theads=4, text_len=64, embed=128, batch_size=64,
                 epochs=8.0, lr=1e-3, warmup=0.05, ckpt_every=100, eval_every=100),
    # Tens of minutes on a CPU; seconds per epoch on an accelerator.
    "small": dict(dataset="synthetic_cxr/small", res=128, patch=16, width=256, depth=4, heads=4,
                  twidth=256, tdepth=4, theads=4, text_len=96, embed=256, batch_size=256,
                  epochs=20.0, lr=5e-4, warmup=0.05, ckpt_every=500, eval_every=500),
    # ViT-B/16 at 224 px with a 12-layer text tower: for accelerators.
    "base": dict(dataset="synthetic_cxr/large", res=224, patch=16, width=768, depth=12, heads=12,
                 twidth=512, tdepth=12, theads=8, text_len=128, embed=512, batch_size=480,
                 epochs=20.0, lr=5e-4, warmup=0.02, ckpt_every=2000, eval_every=2000),
}


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
    """Parses "tiny" or "tiny,batch_size=64,epochs=2" into preset values plus typed overrides.

    Every preset also takes `token_alignment=W`: the weight of the token-level loss (0 = off),
    and `curate_batch_size=N`: the rows a curator scores per step (0 = the batch).
    """
    return parse_preset_arg(arg, PRESETS, "tiny", token_alignment=0.0, curate_batch_size=0,
                            **defaults)


def base_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Full-data CLIP pretraining on the synthetic world at the preset's size."""
    a = parse_arg(arg)
    c = ml_collections.ConfigDict()
    c.preset = a.preset
    c.seed = 0

    c.data = dict(
        name=a.dataset, mixture="", train_split="train", data_dir="", image_size=a.res, text_len=a.text_len,
        vocab_size=4000, tokenizer="", on_error="raise", subset="", worker_count=0,
        augment=dict(enabled=True, crop_scale=(0.85, 1.0), rotate_deg=5.0, brightness=0.1,
                     contrast=0.1, noise_std=0.02),
        # Reports: one random section, sentences dropped and shuffled (CXR-CLIP's recipe).
        text_augment=dict(enabled=True, prob=1.0, section_prob=0.5, sentence_keep=0.8, shuffle=True))

    c.model = dict(
        embed_dim=a.embed, temperature_init=0.07, bias_init=-10.0, dtype="float32",
        image=dict(image_size=a.res, patch_size=a.patch, width=a.width, depth=a.depth,
                   heads=a.heads, mlp_ratio=4.0, pool="map", registers=0, stem="conv",
                   feature_layers=tuple(sorted({max(1, a.depth // 2), a.depth})),
                   pretrained=""),  # a Hugging Face ViT / DINOv2 folder (chexficient/models/pretrained.py)
        text=dict(vocab_size=0, width=a.twidth, depth=a.tdepth, heads=a.theads, mlp_ratio=4.0,
                  max_len=a.text_len, causal=True,
                  pretrained=""),  # a Hugging Face BERT folder: its tower and WordPiece tokenizer
        local_dim=a.embed if a.token_alignment else 0,  # token heads, only with the term below
        classes=0)  # > 0: a multi-label head on the image tower (configs/supervised.py)
    c.loss = "softmax"  # or "sigmoid" (SigLIP), or "supervised" (the head's cross-entropy)
    # Word-patch alignment within each pair (MGCA-style), added to the global loss with this
    # weight: off by default (the CheXficient method is global CLIP); on, patch tokens learn
    # where findings are, which is what dense tasks such as segmentation read.
    c.token_alignment = dict(weight=a.token_alignment, temperature=0.1)

    c.batch_size = a.batch_size  # global batch; when curating, the super-batch scored per step
    # unless schedule.curate_batch_size sets that
    c.total_epochs = a.epochs
    c.total_steps = 0  # > 0 overrides total_epochs
    c.total_flops = 0.0  # > 0 (full schedule only): train for this many FLOPs, overriding both

    c.optim = dict(
        lr=a.lr, end_lr_factor=0.1, warmup_frac=a.warmup, min_warmup_steps=8,
        b1=0.9, b2=0.98, eps=1e-8,
        weight_decay=0.2, clip_norm=1.0, lr_mult=dict(image=1.0, text=1.0), freeze="")

    c.mesh = dict(data=-1, fsdp=1)
    c.distributed = False

    c.curator = curation.default_config()  # name "none": no online curation
    # curate_batch_size > 0: a curate step scores this many rows (its super-batch) instead of
    # batch_size; the subset phase still trains at batch_size (docs/curation.md).
    # offline_args.<method>: the hyper-parameters of each offline baseline (curation/offline.py)
    c.schedule = dict(name="full", curation_epochs=1.0, budget=0.0, offline="",
                      offline_args=curation.offline.default_args(),
                      curate_batch_size=a.curate_batch_size)
    c.reference = dict(path="")  # a frozen checkpoint for reference losses / offline selection
    c.init_from = dict(path="", towers="both")  # "both" | "image" | "text"

    c.log_every_steps = 10
    # milestones > 0: also keep the model at every such fraction of full-data compute, for
    # equal-compute comparisons and learning curves (chexficient/checkpoint.py Milestones).
    c.checkpoint = dict(every_steps=a.ckpt_every, max_to_keep=2, keep_final=True, milestones=0.0)
    c.eval = dict(every_steps=a.eval_every, split="validation", batch_size=min(a.batch_size, 256),
                  max_batches=4)
    c.progress = True
    return c
