"""Time of one curator select + update (jitted together) at a given global batch.

Prints milliseconds per call, selections per second and rows scored per second for
each curator, after warm-up (prototypes initialised), so the figure is the per-step
cost the trainer pays during curation. Divide by a train step's time for the overhead.

    python benchmarks/curator_overhead.py --batch 512 --dims 128 512
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from curation import make_curator

CASES = {
    "chexficient/farthest": dict(name="chexficient"),
    "chexficient/density": dict(name="chexficient", chexficient=dict(central_sampler="density")),
    "chexficient/random": dict(name="chexficient", chexficient=dict(central_sampler="random")),
    "loss/learnability": dict(name="loss"),
    "jest": dict(name="jest"),
    "combined": dict(name="combined"),
}


def batch(rng: np.random.Generator, size: int, dim: int) -> tuple[dict, dict]:
    """Clustered pair embeddings (image, text and a reference model's) and per-example losses."""
    centers = rng.normal(size=(8, dim))
    image = centers[rng.integers(0, 8, size)] + rng.normal(size=(size, dim))
    emb = {"image": image, "text": image + 0.5 * rng.normal(size=(size, dim)),
           "ref_image": image, "ref_text": image + 0.3 * rng.normal(size=(size, dim))}
    losses = {"learner": rng.random(size) + 1.0, "reference": rng.random(size)}
    as_jax = lambda tree: {k: jnp.asarray(v, jnp.float32) for k, v in tree.items()}  # noqa: E731
    return as_jax(emb), as_jax(losses)


def time_case(overrides: dict, size: int, dim: int, iters: int) -> float:
    """Seconds per select + update, median over `iters` calls after warm-up."""
    curator = make_curator(ml_collections.ConfigDict({"curator": overrides}))
    rng = np.random.default_rng(0)
    emb, losses = batch(rng, size, dim)
    state = curator.init(jax.random.key(0), emb)

    @jax.jit
    def step(state, emb, losses, key):
        keep, info = curator.select(state, emb, losses, key)
        return curator.update(state, emb, keep), info["n_kept"]

    for i in range(12):  # fills the warm-up buffer, runs k-means, compiles
        state, n_kept = step(state, emb, losses, jax.random.key(i))
    jax.block_until_ready(n_kept)
    times = []
    for i in range(iters):
        start = time.perf_counter()
        state, n_kept = step(state, emb, losses, jax.random.key(100 + i))
        jax.block_until_ready((state, n_kept))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--dims", type=int, nargs="+", default=[128, 512],
                        help="per-tower embedding sizes (the joint embedding is twice as wide)")
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    args = parser.parse_args()
    print(f"device: {jax.devices()[0].device_kind} x{jax.device_count()}, batch {args.batch}")
    print(f"{'curator':<22} {'D':>9} {'ms/step':>9} {'selections/s':>13} {'rows/s':>11}")
    for dim in args.dims:
        for name in args.cases:
            seconds = time_case(CASES[name], args.batch, dim, args.iters)
            print(f"{name:<22} {f'2x{dim}':>9} {1e3 * seconds:9.2f} {1 / seconds:13.1f} "
                  f"{args.batch / seconds:11.0f}")


if __name__ == "__main__":
    main()
