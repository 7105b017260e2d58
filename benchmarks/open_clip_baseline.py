"""open_clip's train step on the same tiny architecture, for a side-by-side pairs/s figure.

Run with an interpreter that has torch and open_clip_torch (not dependencies of this
project); `benchmarks/train_throughput.py --open_clip_python PY` calls it. Same widths,
depths, heads, patch, resolution, context length, vocab and embed dim as our preset; float32,
AdamW, symmetric InfoNCE, random batches in memory. Its image input has 3 channels (open_clip
has no grayscale stem), a negligible difference in the patch embedding.
"""

from __future__ import annotations

import argparse
import time

PRESETS = {
    "tiny": dict(res=64, patch=8, width=128, depth=2, heads=4, twidth=128, tdepth=2, theads=4,
                 text_len=64, embed=128),
    "small": dict(res=128, patch=16, width=256, depth=4, heads=4, twidth=256, tdepth=4, theads=4,
                  text_len=96, embed=256),
}


def main() -> None:
    import open_clip
    import torch
    import torch.nn.functional as F

    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    p = PRESETS[args.preset]
    model = open_clip.CLIP(
        embed_dim=p["embed"],
        vision_cfg=dict(image_size=p["res"], patch_size=p["patch"], width=p["width"],
                        layers=p["depth"], head_width=p["width"] // p["heads"], mlp_ratio=4.0),
        text_cfg=dict(context_length=p["text_len"], vocab_size=4000, width=p["twidth"],
                      heads=p["theads"], layers=p["tdepth"]))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4)
    g = torch.Generator().manual_seed(0)
    images = torch.randn(args.batch, 3, p["res"], p["res"], generator=g)
    texts = torch.randint(3, 4000, (args.batch, p["text_len"]), generator=g)
    labels = torch.arange(args.batch)

    def step():
        img, txt, scale = model(images, texts)
        logits = scale * img @ txt.T
        loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    t = time.perf_counter()
    for _ in range(args.steps):
        step()
    seconds = (time.perf_counter() - t) / args.steps
    print(f"torch {torch.__version__}, open_clip {open_clip.__version__}, threads {args.threads}")
    print(f"pairs_per_s={args.batch / seconds:.2f}")


if __name__ == "__main__":
    main()
