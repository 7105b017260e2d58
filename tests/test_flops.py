"""The FLOP ledger: one executable per step function and argument shapes, calls counted by name."""

import jax
import jax.numpy as jnp
import numpy as np

from pretrain.flops import FlopLedger, compiled_flops


def _step(w, x):
    return w, jnp.tanh(x @ w).sum()


def test_names_sharing_a_function_share_its_executable_and_count_apart():
    jitted = jax.jit(_step)
    w, x = jnp.ones((32, 32)), jnp.ones((8, 32))
    ledger = FlopLedger()
    full = ledger.compiled("full", jitted, w, x)
    subset = ledger.compiled("subset", jitted, w, x)
    assert subset is full  # one trace, one compilation
    ledger.compiled("subset", jitted, w, x)
    expected = compiled_flops(jitted.lower(w, x).compile())
    assert expected >= 2 * 8 * 32 * 32  # the matmul alone
    assert ledger.flops_per_call == {"full": expected, "subset": expected}
    assert ledger.calls == {"full": 1, "subset": 2}
    assert ledger.spent() == 3 * expected
    np.testing.assert_allclose(full(w, x)[1], jitted(w, x)[1])


def test_compile_seconds_count_each_compilation_once():
    jitted = jax.jit(_step)
    w, x = jnp.ones((32, 32)), jnp.ones((8, 32))
    ledger = FlopLedger()
    assert ledger.compile_seconds == 0.0
    ledger.compiled("full", jitted, w, x)
    once = ledger.compile_seconds
    assert once > 0.0
    ledger.compiled("full", jitted, w, x)
    ledger.compiled("subset", jitted, w, x)  # the same executable: nothing compiled
    assert ledger.compile_seconds == once
    ledger.compiled("wide", jitted, jnp.ones((64, 64)), jnp.ones((8, 64)))
    assert ledger.compile_seconds > once


def test_other_shapes_compile_their_own_executable():
    jitted = jax.jit(_step)
    ledger = FlopLedger()
    small = ledger.compiled("a", jitted, jnp.ones((16, 16)), jnp.ones((4, 16)))
    large = ledger.compiled("b", jitted, jnp.ones((64, 64)), jnp.ones((4, 64)))
    assert small is not large
    assert ledger.flops_per_call["b"] > ledger.flops_per_call["a"]


def test_summary_divides_by_full_data_steps_without_counting_a_call():
    jitted = jax.jit(_step)
    w, x = jnp.ones((32, 32)), jnp.ones((8, 32))
    ledger = FlopLedger()
    ledger.compiled("curate", jitted, w, x)
    out = ledger.summary(full_step_fn=jitted, state=w, batch=x, full_steps=4)
    assert out["compute_fraction"] == 0.25
    assert ledger.calls == {"curate": 1}
