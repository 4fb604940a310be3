"""Per-example losses for each task; the step averages them over unmasked examples.

* multiclass: softmax cross-entropy, optional label smoothing and class weights;
* one-vs-rest models (``model.one_vs_rest``): K independent sigmoid cross-entropies
  against one-hot targets, summed (each logit is its own binary classifier);
* binary: sigmoid cross-entropy of the single logit, class weights [w_neg, w_pos];
* multilabel: sigmoid cross-entropy per label, averaged over labels.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def _class_weight(labels, class_weights):
    if class_weights is None:
        return 1.0
    return jnp.asarray(class_weights, jnp.float32)[labels]


def per_example_loss(
    logits, labels, *, task: str, one_vs_rest: bool = False, label_smoothing: float = 0.0, class_weights=None
) -> jax.Array:
    """Loss of each example, shape (batch,)."""
    if task == "binary":
        logits = logits.reshape(logits.shape[0])
        targets = labels.astype(jnp.float32)
        targets = targets * (1.0 - label_smoothing) + 0.5 * label_smoothing
        loss = optax.sigmoid_binary_cross_entropy(logits, targets)
        return loss * _class_weight(labels, class_weights)
    if task == "multilabel":
        loss = optax.sigmoid_binary_cross_entropy(logits, labels.astype(jnp.float32))
        return loss.mean(axis=-1)
    num_classes = logits.shape[-1]
    targets = optax.smooth_labels(jax.nn.one_hot(labels, num_classes), label_smoothing)
    if one_vs_rest:
        loss = optax.sigmoid_binary_cross_entropy(logits, targets).sum(axis=-1)
    else:
        loss = optax.softmax_cross_entropy(logits, targets)
    return loss * _class_weight(labels, class_weights)
