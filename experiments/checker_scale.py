"""Benchmark: the gradient checker on research-sized models (the checker-at-scale issue), with jax's
``check_grads`` (and torch's ``gradcheck``, fast and full, where torch is installed) beside it.

Each case runs in a fresh process, so that its peak resident memory (``ru_maxrss``, the whole process,
jax's own ~0.3 GiB included) and its time (one call, compile included: a user's first check) are its
own.  The models are float64 tanh (or ReLU) MLPs written as research code writes them, a Python loop over
layers, with a hand-derived backward pass and, for the diagnosis cases, one planted mistake.  Targets (2
CPU cores) from the issue:

==================  ===========================================================  ==============
case                what                                                         target
==================  ===========================================================  ==============
diagnose-24         wrong tanh derivative in layer 10 of 24 (1.58M parameters)    20 s, 2.5 GiB
diagnose-scan       wrong recurrent derivative in a 200-step ``lax.scan`` RNN     15 s, 1.5 GiB
fd-1e6              ``finite_differences=True``, 1e6 parameters, wrong bias       60 s, 2 GiB
kinks-1e6           ReLU net at exact kinks, correct gradient, 1e6 parameters     60 s, 3 GiB
correct-1e7         correct check at 1e7 parameters vs one manual + one grad      3x
==================  ===========================================================  ==============

The peers check the same correct models (1e3, 1e6 and 1e7 parameters), each in its own process too:
``check_grads-*`` (jax's ``check_grads``, reverse mode, its default tolerances), ``torch-fast-*`` and
``torch-full-1e3`` (torch's ``gradcheck`` with and without ``fast_mode``, on the same MLP in torch,
float64; full mode differences every entry, so it runs at 1e3 only).  torch comes with the ``bench``
extra; without it those rows say NOT RUN.

Prints a table and writes JSON.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

OUT = "results/checker_scale.json"
BATCH = 64
CASES = {  # name: (widths, activation, planted bug, check options, target seconds, target GiB)
    "correct-1e3": ([16, 32, 16, 1], "tanh", None, {}, None, None),
    "correct-1e6": ([256, 1024, 768, 1], "tanh", None, {}, None, None),
    "diagnose-3": ([256, 1024, 768, 1], "tanh", ("derivative_at_output", 1), {}, None, None),
    "diagnose-24": ([256] * 25 + [1], "tanh", ("derivative_at_output", 10), {}, 20.0, 2.5),
    "fd-1e6": ([256, 1024, 768, 1], "tanh", ("bias_doubled", 2), {"finite_differences": True}, 60.0, 2.0),
    "kinks-1e6": ([256, 1024, 768, 1], "relu", None, {}, 60.0, 3.0),
    "correct-1e7": ([512, 2048, 2048, 2048, 1], "tanh", None, {}, None, None),
    "diagnose-1e7": ([512, 2048, 2048, 2048, 1], "tanh", ("derivative_at_output", 2), {}, None, 8.0),
    "diagnose-scan": (None, "scan", ("recurrent_at_output", None), {}, 15.0, 1.5),
}
PEER_SIZES = {"1e3": CASES["correct-1e3"][0], "1e6": CASES["correct-1e6"][0], "1e7": CASES["correct-1e7"][0]}
for _size, _widths in PEER_SIZES.items():  # the peers on the same correct models, each in its own process
    CASES[f"check_grads-{_size}"] = (_widths, "tanh", None, {"peer": "jax"}, None, None)
    CASES[f"torch-fast-{_size}"] = (_widths, "tanh", None, {"peer": "torch-fast"}, None, None)
CASES["torch-full-1e3"] = (PEER_SIZES["1e3"], "tanh", None, {"peer": "torch-full"}, None, None)
SCAN_STEPS, SCAN_HIDDEN, SCAN_IN = 200, 8, 4  # 8*8 + 4*8 + 8 + 8 = 112 parameters


def mlp_params(widths, seed=0):
    keys = jax.random.split(jax.random.key(seed), len(widths))
    return [{"W": jax.random.normal(k, (a, b), jnp.float64) / np.sqrt(a), "b": jnp.zeros(b, jnp.float64)}
            for k, a, b in zip(keys, widths[:-1], widths[1:])]


def mlp_loss(act):
    f = jnp.tanh if act == "tanh" else jax.nn.relu

    def loss(params, x, y):
        h = x
        for layer in params[:-1]:
            h = f(h @ layer["W"] + layer["b"][None, :])  # hidden layer
        out = h @ params[-1]["W"] + params[-1]["b"][None, :]
        return 0.5 * jnp.mean((out[:, 0] - y) ** 2)

    return loss


def mlp_grad(act, bug=None):
    """A hand-derived backward pass, layer by layer (as a researcher writes it)."""
    kind, at = bug or (None, None)

    def grad(params, x, y):
        hs, zs, h = [x], [], x
        for layer in params[:-1]:
            z = h @ layer["W"] + layer["b"][None, :]
            h = jnp.tanh(z) if act == "tanh" else jax.nn.relu(z)
            zs.append(z)
            hs.append(h)
        out = h @ params[-1]["W"] + params[-1]["b"][None, :]
        d = ((out[:, 0] - y) / x.shape[0])[:, None]
        grads = [None] * len(params)
        for k in range(len(params) - 1, -1, -1):
            gb = jnp.sum(d, axis=0)
            grads[k] = {"W": hs[k].T @ d, "b": 2 * gb if (kind == "bias_doubled" and k == at) else gb}
            if k:
                d = d @ params[k]["W"].T
                if act == "tanh":
                    deriv = 1 - (zs[k - 1] if (kind == "derivative_at_output" and k - 1 == at) else hs[k]) ** 2
                else:
                    deriv = (zs[k - 1] >= 0).astype(jnp.float64)  # relu'(0) = 1: valid at a kink, not autodiff's
                d = d * deriv
        return grads

    return grad


def mlp_case(widths, act, bug):
    params = mlp_params(widths)
    x = jax.random.normal(jax.random.key(1), (BATCH, widths[0]), jnp.float64)
    if act == "relu":  # exact kinks: every first-layer pre-activation of the first half of the batch is 0
        x = x.at[: BATCH // 2].set(0.0)
    y = jnp.sin(jnp.arange(BATCH, dtype=jnp.float64))
    return mlp_loss(act), mlp_grad(act, bug), params, (x, y)


def scan_case(bug):
    k = jax.random.split(jax.random.key(0), 3)
    p = {"Wh": jax.random.normal(k[0], (SCAN_HIDDEN, SCAN_HIDDEN), jnp.float64) / 3,
         "Wx": jax.random.normal(k[1], (SCAN_IN, SCAN_HIDDEN), jnp.float64) / 2,
         "b": jnp.zeros(SCAN_HIDDEN, jnp.float64), "v": jnp.ones(SCAN_HIDDEN, jnp.float64) / 4}
    xs = jax.random.normal(k[2], (SCAN_STEPS, SCAN_IN), jnp.float64)

    def loss(p, xs):
        def step(h, x):
            h = jnp.tanh(h @ p["Wh"] + x @ p["Wx"] + p["b"])  # cell
            return h, h @ p["v"]

        _, ys = jax.lax.scan(step, jnp.zeros(SCAN_HIDDEN, jnp.float64), xs)
        return 0.5 * jnp.sum(ys ** 2) / SCAN_STEPS

    def grad(p, xs):
        def fwd(h, x):
            z = h @ p["Wh"] + x @ p["Wx"] + p["b"]
            hn = jnp.tanh(z)
            return hn, (h, z, hn)

        _, (hprev, zs, hs) = jax.lax.scan(fwd, jnp.zeros(SCAN_HIDDEN, jnp.float64), xs)
        dys = (hs @ p["v"]) / SCAN_STEPS

        def bwd(carry, t):
            dh, gWh, gWx, gb = carry
            h0, z, hn, x, dy = t
            dh = dh + dy * p["v"]
            dz = dh * (1 - (z if bug else hn) ** 2)
            return (dz @ p["Wh"].T, gWh + jnp.outer(h0, dz), gWx + jnp.outer(x, dz), gb + dz), None

        zero = jnp.zeros(SCAN_HIDDEN, jnp.float64)
        (_, gWh, gWx, gb), _ = jax.lax.scan(bwd, (zero, jnp.zeros_like(p["Wh"]), jnp.zeros_like(p["Wx"]), zero),
                                            (hprev, zs, hs, xs, dys), reverse=True)
        return {"Wh": gWh, "Wx": gWx, "b": gb, "v": hs.T @ dys}

    return loss, grad, p, (xs,)


def peer(kind, act, loss, params, x, y):
    """A peer's check of the same correct model: jax's ``check_grads`` (one random direction, reverse mode,
    its default tolerances) or torch's ``gradcheck`` (``fast_mode``: one random direction pair; full: one
    difference per parameter entry) on the same MLP in float64.  Each checks its framework's autodiff
    against finite differences, not a hand gradient: the peer's cost for the same question.  Returns
    ``(verdict, note)``."""
    if kind == "jax":
        from jax.test_util import check_grads
        try:
            check_grads(lambda p: loss(p, x, y), (params,), order=1, modes=("rev",))
            return True, ""
        except AssertionError:
            return False, "a correct gradient failed at check_grads' default tolerance"
    try:
        import torch
    except ImportError:
        return None, "torch not installed (pip install -e '.[bench]')"
    ts = [torch.tensor(np.asarray(l), dtype=torch.float64, requires_grad=True) for l in jax.tree.leaves(params)]
    tx, ty = torch.tensor(np.asarray(x)), torch.tensor(np.asarray(y))
    f = torch.tanh if act == "tanh" else torch.relu

    def torch_loss(*ls):
        h = tx
        for k in range(0, len(ls) - 2, 2):
            h = f(h @ ls[k] + ls[k + 1])
        return 0.5 * torch.mean(((h @ ls[-2] + ls[-1])[:, 0] - ty) ** 2)

    return torch.autograd.gradcheck(torch_loss, ts, fast_mode=kind == "torch-fast", raise_exception=False), \
        f"torch {torch.__version__}"


def run_case(name):
    import verification

    verification.configure()
    widths, act, bug, options, _, _ = CASES[name]
    loss, grad, params, args = scan_case(bug) if act == "scan" else mlp_case(widths, act, bug)
    n = sum(int(np.size(l)) for l in jax.tree.leaves(params))
    if "peer" in options:
        t0 = time.perf_counter()
        ok, note = peer(options["peer"], act, loss, params, *args)
        return {"case": name, "parameters": n, "seconds": time.perf_counter() - t0, "passed": ok, "causes": [],
                "notes": [note] if note else [], "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20}
    check = lambda: verification.check_gradients(loss, grad, params, *args, **options)  # noqa: E731
    t0 = time.perf_counter()
    report = check()
    seconds = time.perf_counter() - t0
    out = {"case": name, "parameters": n, "seconds": seconds, "passed": report.passed,
           "causes": sorted({d.cause for d in report.diagnoses}), "where": [d.where for d in report.diagnoses][:2],
           "notes": report.notes}
    if report.finite_differences is not None:
        out["fd_failing"] = [l.path for l in report.finite_differences if not l.passed]
    if name.startswith("correct"):  # warm ratio: the median of interleaved (check, one manual + one jax.grad)
        checks, bases = [], []
        for _ in range(3):
            t0 = time.perf_counter()
            check()
            checks.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            jax.block_until_ready((grad(params, *args), jax.grad(loss)(params, *args)))
            bases.append(time.perf_counter() - t0)
        out["warm_check_s"], out["manual_plus_grad_s"] = float(np.median(checks)), float(np.median(bases))
    out["peak_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m experiments checker-scale", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=OUT, help=f"JSON file to write (default {OUT})")
    ap.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES), help="cases to run")
    ap.add_argument("--case", help=argparse.SUPPRESS)  # one case, in this process (the child)
    args = ap.parse_args(argv)
    if args.case:
        print(json.dumps(run_case(args.case)))
        return 0
    rows = []
    for name in args.cases:
        proc = subprocess.run([sys.executable, "-m", "experiments", "checker-scale", "--case", name],
                              capture_output=True, text=True, timeout=1800)
        if proc.returncode:
            rows.append({"case": name, "error": proc.stderr.strip().splitlines()[-1:]})
        else:
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        r, (_, _, _, _, ts, tg) = rows[-1], CASES[name]
        r["target_s"], r["target_gib"] = ts, tg
        print(_line(r), flush=True)
    result = {"machine": f"{platform.processor() or platform.machine()}, {jax.device_count()} x {jax.devices()[0].platform}",
              "jax": jax.__version__, "date": time.strftime("%Y-%m-%d"), "rows": rows}
    from experiments import common
    common.write_json(args.out, result)
    return 0


def _line(r):
    if "error" in r:
        return f"{r['case']:<14} ERROR {r['error']}"
    extra = "  " + "; ".join(r["notes"]) if r["case"].startswith(("check_grads", "torch")) and r["notes"] else ""
    if "manual_plus_grad_s" in r:
        extra = (f"  warm {r['warm_check_s']:.2f} s vs manual+grad {r['manual_plus_grad_s']:.2f} s "
                 f"(x{r['warm_check_s'] / r['manual_plus_grad_s']:.1f})")
    verdict = {True: "PASS", False: "FAIL", None: "NOT RUN"}[r["passed"]]
    return (f"{r['case']:<14} {r['parameters']:>9} params  {r['seconds']:7.2f} s  {r['peak_gib']:5.2f} GiB  "
            f"{verdict} {','.join(r['causes'])}{extra}")


if __name__ == "__main__":
    sys.exit(main())
