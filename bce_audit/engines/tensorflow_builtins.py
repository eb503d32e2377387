"""The built-in formulations' TensorFlow and Keras code, written exactly as their users write them.

``formulations.builtins`` declares each one; the TensorFlow engine calls the TF ones with
tensors of shape (N,), the Keras engine the Keras ones with shape (N, 1) (a Keras loss reduces
over the last axis), in the dtype under test.
"""

from __future__ import annotations

from typing import Any

# isort: off
# the engine first: it imports TensorFlow with its C++ log lines kept off standard error
from bce_audit.engines.tensorflow_engine import keras_module
import tensorflow as tf

# isort: on


def tf_sigmoid_ce(z: tf.Tensor, y: tf.Tensor) -> Any:
    return tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=z)


def keras_bce(p: tf.Tensor, y: tf.Tensor) -> Any:
    return keras_module().losses.binary_crossentropy(y, p, from_logits=False)


def keras_bce_logits(z: tf.Tensor, y: tf.Tensor) -> Any:
    return keras_module().losses.binary_crossentropy(y, z, from_logits=True)
