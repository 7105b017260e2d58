#!/usr/bin/env bash
# The GPU figures of docs/performance.md ("On a GPU"), in one call of a lent GPU machine.
#
# The machine's image has JAX with CUDA, flax, optax and the rest of what the train step
# imports, but not ml-collections: carry its wheel. Once, here, in the repository's root:
#
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux2014_x86_64 -d .whl ml-collections==1.1.0
#
# then run `bash benchmarks/gpu_check.sh` there with `.whl` carried. It prints (and writes to
# $OUT) the GPU, a check that cuDNN's fused attention computes what ours does in bfloat16
# (values and gradients), and train_throughput.py's pairs/s and MFU for each of $RUNS
# (preset:batch:dtype:stem:pool, space-separated), --steps $STEPS each.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-"base:256:bfloat16:patch:map small:256:bfloat16:conv:map"}
STEPS=${STEPS:-10}
OUT=${OUT:-$(mktemp -d)}
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || echo "no nvidia-smi") \
  | tee "$OUT/gpu.txt"

python3 - <<'EOF' 2>&1 | tee "$OUT/attention.txt"
import jax
import jax.numpy as jnp
from chexficient.models.layers import attention, dot_product_attention, fused_attention_applies

print("backend", jax.default_backend(), jax.devices())
keys = jax.random.split(jax.random.key(0), 3)
q, k, v = (jax.random.normal(key, (8, 197, 12, 64), jnp.bfloat16) for key in keys)
print("asks for cuDNN:", fused_attention_applies(q, None))
loss = lambda fn: lambda q, k, v: jnp.sum(fn(q, k, v).astype(jnp.float32) ** 2)
fused = lambda q, k, v: attention(q, k, v, implementation="cudnn" if jax.default_backend() == "gpu" else "xla")
for name, a, b in (("values", fused(q, k, v), dot_product_attention(q, k, v)),
                   ("gradients", jax.grad(loss(fused), argnums=(0, 1, 2))(q, k, v),
                    jax.grad(loss(dot_product_attention), argnums=(0, 1, 2))(q, k, v))):
    diff = max(float(jnp.max(jnp.abs(x.astype(jnp.float32) - y.astype(jnp.float32)))
                     / jnp.max(jnp.abs(y.astype(jnp.float32))))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    print(f"{name}: max |cuDNN - ours| / max |ours| = {diff:.3g}")
EOF

for run in $RUNS; do
  IFS=: read -r preset batch dtype stem pool <<< "$run"
  echo "== $run" | tee -a "$OUT/train_throughput.txt"
  python3 benchmarks/train_throughput.py --preset "$preset" --batch "$batch" --dtype "$dtype" \
    --stem "$stem" --pool "$pool" --steps "$STEPS" 2>&1 | tee -a "$OUT/train_throughput.txt"
done
