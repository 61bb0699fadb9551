"""A graph-convolution layer with symmetric edge weights, written with a gather and ``segment_sum``, a
tanh, a mean read-out over nodes, squared error.

.. math:: H_v = \\tanh\\Big(\\sum_{(u \\to v)} c_{uv}\\, X_u W + b\\Big),\\quad
          J = \\lVert \\tfrac{1}{n}\\textstyle\\sum_v H_v R - y\\rVert^2
"""
import jax
import jax.numpy as jnp

from verification.catalogue.planted import Planted
from verification.catalogue.data import random_tree

NAME = "graph convolution (segment_sum)"
N_NODES, N_IN, H, N_OUT = 5, 3, 4, 2
SRC = jnp.array([0, 1, 1, 2, 3, 4, 4, 0, 2])
DST = jnp.array([1, 0, 2, 1, 4, 3, 0, 4, 3])


def loss(p, x, y):
    c = x[0]  # (n_edges,) edge weights, data
    feats = x[1]
    msg = feats[SRC] @ p["W"]  # site: message
    msg = msg * c[:, None]  # site: weight
    agg = jax.ops.segment_sum(msg, DST, num_segments=N_NODES)  # site: aggregate
    h = jnp.tanh(agg + p["b"][None, :])  # site: act
    pooled = jnp.mean(h, axis=0)  # site: pool
    out = pooled @ p["R"]  # site: out
    return jnp.sum((out - y) ** 2)  # site: loss


def grad(p, x, y, bug=None):
    c, feats = x
    agg = jax.ops.segment_sum((feats[SRC] @ p["W"]) * c[:, None], DST, num_segments=N_NODES)
    h = jnp.tanh(agg + p["b"][None, :])
    pooled = jnp.mean(h, axis=0)
    dout = 2 * (pooled @ p["R"] - y)
    dpooled = dout @ p["R"].T
    dh = jnp.broadcast_to(dpooled if bug == "pool_as_sum" else dpooled / N_NODES, h.shape)  # bwd: pool_as_sum
    dagg = dh if bug == "tanh_dropped" else dh * (1 - h ** 2)  # bwd: tanh_dropped
    # the gather that undoes segment_sum
    dmsg = dagg[SRC if bug == "scatter_by_source" else DST]  # bwd: scatter_by_source
    dmsg = dmsg if bug == "edge_weight_forgotten" else dmsg * c[:, None]  # bwd: edge_weight_forgotten
    return {"W": feats[SRC].T @ dmsg, "b": dagg.sum(0), "R": jnp.outer(pooled, dout)}


def problem(seed=0):
    p = random_tree({"W": (N_IN, H), "b": (H,), "R": (H, N_OUT)}, seed=seed)
    k1, k2, k3 = jax.random.split(jax.random.key(seed + 100), 3)
    c = jax.random.uniform(k1, (SRC.shape[0],), jnp.float64, 0.2, 1.0)
    feats = jax.random.normal(k2, (N_NODES, N_IN), jnp.float64)
    return p, (c, feats), jax.random.normal(k3, (N_OUT,), jnp.float64)


BUGS = [
    Planted("pool_as_sum", "the mean read-out differentiated as a sum", "mean_sum_confused", "pool"),
    Planted("tanh_dropped", "tanh' left out", "derivative_dropped", "act"),
    Planted("scatter_by_source", "the aggregate's delta gathered by source node where the destination belongs",
            "unknown", "aggregate"),
    Planted("edge_weight_forgotten", "the edge weights left out of the messages' delta", "derivative_dropped",
            "weight"),
]
