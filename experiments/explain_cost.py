"""Benchmark: how long does the gradient checker take to locate and explain a single-mutation bug in a
5-layer MLP loss?  (Target of the checker issue: at most 10 s on 2 CPU cores.)

The mutations are drawn from the checker's own vocabulary, at random sites of the traced loss: every
single-site rule edit (a derivative dropped or evaluated at the wrong point, the wrong branch, a wrong
saved or transposed operand) and every edge scaled by 0, -1 or 2 (a dropped path, a flipped sign, a
factor 2).  The buggy "hand-derived" gradient is autodiff of the mutated program, jitted, so that it
warms none of the checker's op-by-op caches.  Each check is timed whole (compare, localise, explain), the
first one cold (it compiles), in the order drawn.  A mutation counts as explained when a fitting
hypothesis names its equation (by index: jaxmlp's layers share source lines).  Prints and writes JSON.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

import jaxmlp
import verification
from experiments import common
from verification import check_gradients
from verification.checker.jaxpr import graph as jg
from verification.checker.explain import derivative_edits, edits
from verification.suite.problems import mlp_problem

SIZES = (8, 32, 32, 32, 32, 4)  # 5 layers
ACTIVATION, HEAD, BATCH = "tanh", "softmax_cross_entropy", 64
N_MUTATIONS = 40
SCALES = (0.0, -1.0, 2.0)
TARGET_S = 10.0
OUT = "results/explain_cost.json"


def mutations(graph, leaves, rng):
    """``(description, planted equation, buggy gradient)``, drawn at random from both kinds."""
    values = derivative_edits.saved_values(graph, leaves)
    pool = [("edit", c) for c in derivative_edits.candidates(graph, values) if len(c.edits) == 1]
    pool += [("scale", (e, a)) for e in graph.edges for a in SCALES]
    for k in rng.permutation(len(pool))[:N_MUTATIONS]:
        kind, what = pool[k]
        if kind == "edit":
            grad = jax.jit(jax.grad(lambda ls, c=what: edits.evaluate(graph, ls, edits.Changes(edits=c.edits))))(list(leaves))
            yield f"{what.cause}: {what.text}", what.eqn, grad
        else:
            (i, j), a = what
            grad = jax.jit(jax.grad(lambda ls: edits.evaluate(graph, ls, edits.Changes(scales={(i, j): jnp.asarray(a)}))))(list(leaves))
            yield f"edge scaled by {a:g}: {graph.describe(i)} input {j + 1}", i, grad


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m experiments explain-cost", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=OUT, help=f"JSON file to write (default {OUT})")
    ap.add_argument("--seed", type=int, default=0, help="which mutations are drawn")
    args = ap.parse_args(argv)
    verification.configure()
    model, params, x, y = mlp_problem(SIZES, ACTIVATION, HEAD, m=BATCH, init="xavier", seed=args.seed)

    def loss(p, x, y):
        return jaxmlp.loss(model, p, x, y, check=False)

    leaves, treedef = jax.tree.flatten(params)
    graph = jg.trace(lambda p: loss(p, x, y), params, [str(k) for k in range(len(leaves))])
    rows = []
    for text, eqn, grad in mutations(graph, leaves, np.random.default_rng(args.seed)):
        buggy = jax.tree.unflatten(treedef, grad)
        t0 = time.perf_counter()
        r = check_gradients(loss, lambda p, x, y: buggy, params, x, y)
        seconds = time.perf_counter() - t0
        if r.passed:  # the mutation changed nothing (an edge whose cotangent is zero here)
            continue
        found = any(eqn in h.sites for h in r.hypotheses)
        rows.append({"mutation": text, "seconds": seconds, "explained_at_site": bool(found),
                     "first_hypothesis": r.hypotheses[0].cause if r.hypotheses else None})
        print(f"{seconds:6.2f} s  {'explained' if found else 'NOT at site'}  {text}", flush=True)
    secs = [r["seconds"] for r in rows]
    res = {"sizes": SIZES, "batch": BATCH, "mutations": len(rows), "cold_first_s": secs[0],
           "median_s": statistics.median(secs), "max_s": max(secs), "target_s": TARGET_S,
           "within_target": max(secs) <= TARGET_S,
           "explained_at_site": sum(r["explained_at_site"] for r in rows) / len(rows),
           "device": jax.devices()[0].device_kind, "jax": jax.__version__, "python": platform.python_version()}
    print(json.dumps(res, indent=1))
    common.write_json(args.out, {**res, "rows": rows, "environment": common.environment()})
    return 0 if res["within_target"] else 1


if __name__ == "__main__":
    main()
