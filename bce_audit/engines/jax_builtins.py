"""The built-in formulations' JAX code, written exactly as JAX users write them.

``formulations.builtins`` declares each one; the JAX engine calls it with arrays of the dtype
under test and every parameter as a keyword.
"""

from __future__ import annotations

import jax
import optax


def optax_sigmoid_bce(z: jax.Array, y: jax.Array) -> jax.Array:
    loss: jax.Array = optax.sigmoid_binary_cross_entropy(z, y)
    return loss


def jax_logsigmoid(z: jax.Array, y: jax.Array) -> jax.Array:
    log_sigmoid = jax.nn.log_sigmoid
    return -(y * log_sigmoid(z) + (1 - y) * log_sigmoid(-z))
