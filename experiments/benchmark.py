"""Performance benchmark: jaxmlp's manual gradient vs jax.grad, PyTorch eager and the source documents' numpy loops.

For every configuration the jitted training step (gradient + SGD update) is
timed with ``block_until_ready`` after a warm-up, as the median over repeats of
a ``lax.scan`` of K steps.  The matmul peak is measured in the same run (a
large float32 matmul) and each configuration's FLOP rate, counted as
6 * sum_l n_{l-1} n_l FLOPs per example per step, is reported as a fraction
of it.  Writes ``benchmark.json`` and ``benchmark.md`` under ``--out``.

Reference loops, rewritten in our own words: Higham & Higham's per-example SGD
(Higham & Higham notes (2024-09-10)), the PyTorch tutorial's numpy network and cs231n's spiral network
(Matrix Backprop (2019-05-15)'s two programs).  PyTorch eager runs when torch is installed
(``pip install 'jaxmlp[bench]'``), from the same initial weights.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import platform
import time
from datetime import date

import jax
import jax.numpy as jnp
import numpy as np

import jaxmlp
from experiments import common, regression
from jaxmlp.atomic import write_atomic
from jaxmlp import optim
from jaxmlp import train

# name: (sizes, batch, scan length K, needs a GPU)
CONFIGS = {
    "spiral 2-100-3": ((2, 100, 3), 300, 200, False),
    "784-512-512-10": ((784, 512, 512, 10), 256, 20, False),
    "1024-1024-1024-10": ((1024, 1024, 1024, 10), 1024, 5, False),
    "4096-4096-4096-10": ((4096, 4096, 4096, 10), 4096, 5, True),
}
HIGHAM_STEPS = 10**6
TARGETS = {"manual_over_autodiff_geomean": 1.00, "manual_over_autodiff_max": 1.05, "higham_vs_numpy": 150,
           "cpu_peak_fraction": 0.90, "vs_torch_784": 1.5, "gpu_peak_fraction": 0.70}


def median_times(fns, repeats):
    """Median wall time of each zero-argument function; repeats are interleaved so drift hits all alike."""
    for fn in fns.values():
        jax.block_until_ready(fn())  # warm-up (and compile)
    ts = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            jax.block_until_ready(fn())
            ts[name].append(time.perf_counter() - t)
    return {name: float(np.median(v)) for name, v in ts.items()}


def median_time(fn, repeats):
    return median_times({"fn": fn}, repeats)["fn"]


def matmul_peak(repeats, dtype):
    """The best median FLOP rate of square matmuls over a few sizes, and the size that gave it."""
    sizes = (4096, 8192, 16384) if jax.default_backend() == "gpu" else (1024, 2048, 3072)
    f = jax.jit(lambda a: a @ a)
    rates = {}
    for n in sizes:
        a = jax.random.normal(jax.random.key(0), (n, n), dtype)
        rates[n] = 2 * n**3 / median_time(lambda: f(a), repeats)
    best = max(rates, key=rates.get)
    return rates[best], best


def flops_per_step(sizes, batch):
    """The issue's convention: 6 * sum n_{l-1} n_l per example (forward, weight gradient, input gradient)."""
    return 6 * sum(a * b for a, b in zip(sizes[:-1], sizes[1:])) * batch


def flops_done(sizes, batch):
    """FLOPs a step actually needs: no gradient with respect to the input data (2 n_0 n_1 fewer)."""
    return flops_per_step(sizes, batch) - 2 * sizes[0] * sizes[1] * batch


def _sgd_scan(grad_fn, lr, k):
    def run(params, x, y):
        def body(p, _):
            _, g = grad_fn(p, x, y)
            return jax.tree.map(lambda a, d: a - lr * d, p, g), None

        return jax.lax.scan(body, params, None, length=k)[0]

    return jax.jit(run)


def time_config(sizes, batch, k, repeats, dtype):
    model = jaxmlp.MLP(sizes, "relu", "softmax_cross_entropy")
    params = jaxmlp.init(model, jax.random.key(0), "he", dtype)
    x = jax.random.normal(jax.random.key(1), (batch, sizes[0]), dtype)
    y = jax.random.randint(jax.random.key(2), (batch,), 0, sizes[-1])
    manual = _sgd_scan(lambda p, a, b: jaxmlp.value_and_grad(model, p, a, b, check=False), 0.01, k)
    auto = _sgd_scan(lambda p, a, b: jax.value_and_grad(lambda q: jaxmlp.loss(model, q, a, b, check=False))(p), 0.01, k)
    times = median_times({"manual": lambda: manual(params, x, y), "autodiff": lambda: auto(params, x, y)}, repeats)
    return {name: t / k for name, t in times.items()}, (model, params, x, y)


def torch_step_time(model, params, x, y, repeats, k):
    try:
        import torch
    except ImportError:
        return None
    layers = []
    for i, p in enumerate(params):
        lin = torch.nn.Linear(*p.W.shape)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(np.asarray(p.W, np.float32).T.copy()))
            lin.bias.copy_(torch.from_numpy(np.array(p.b, np.float32)))
        layers += [lin] + ([torch.nn.ReLU()] if i < len(params) - 1 else [])
    net = torch.nn.Sequential(*layers)
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    xt, yt = torch.from_numpy(np.array(x, np.float32)), torch.from_numpy(np.array(y, np.int64))

    def steps():
        for _ in range(k):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(xt), yt).backward()
            opt.step()

    steps()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        steps()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts)) / k


def _sigmoid(z):
    return 0.5 * (1 + np.tanh(0.5 * z))


def numpy_higham(params, x, y, steps, eta=0.05, seed=0):
    """Higham & Higham's SGD, one example per step, column vectors as in their MATLAB (our own words)."""
    W = [np.asarray(p.W, np.float64).T for p in params]
    b = [np.asarray(p.b, np.float64)[:, None] for p in params]
    rng = np.random.default_rng(seed)
    for k in rng.integers(0, len(x), steps):
        a = [x[k][:, None]]
        for Wl, bl in zip(W, b):
            a.append(_sigmoid(Wl @ a[-1] + bl))
        d = a[-1] * (1 - a[-1]) * (a[-1] - y[k][:, None])
        for l in range(len(W) - 1, -1, -1):
            gW, gb = d @ a[l].T, d
            if l:
                d = a[l] * (1 - a[l]) * (W[l].T @ d)
            W[l] -= eta * gW
            b[l] -= eta * gb
    return W, b


def numpy_spiral(x, y, steps, h=100, lr=1.0, reg=1e-3, seed=0):
    """cs231n's two-layer spiral network, full batch (the cs231n program in Matrix Backprop (2019-05-15), our own words)."""
    rng = np.random.default_rng(seed)
    W1, b1 = 0.01 * rng.standard_normal((x.shape[1], h)), np.zeros(h)
    W2, b2 = 0.01 * rng.standard_normal((h, 3)), np.zeros(3)
    m = len(x)
    for _ in range(steps):
        hid = np.maximum(0, x @ W1 + b1)
        s = hid @ W2 + b2
        p = np.exp(s - s.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        p[np.arange(m), y] -= 1
        ds = p / m
        dW2, db2 = hid.T @ ds + reg * W2, ds.sum(0)
        dh = (ds @ W2.T) * (hid > 0)
        dW1, db1 = x.T @ dh + reg * W1, dh.sum(0)
        W1, b1, W2, b2 = W1 - lr * dW1, b1 - lr * db1, W2 - lr * dW2, b2 - lr * db2
    return W1, W2


def higham_rows(steps, numpy_steps, repeats):
    model = jaxmlp.MLP((2, 2, 3, 2), "sigmoid", "sigmoid_quadratic")
    x, y = jaxmlp.data.higham_points()
    params = jaxmlp.init(model, jax.random.key(0), "higham")
    opt = optim.sgd(0.05)  # one optimizer object: a new one would be a new static argument (recompile)

    def run(g):
        return lambda: train.train(g, opt, params, x, y, key=jax.random.key(1), steps=steps, scheme="sgd_replacement",
                               log_every=steps, chunk_steps=steps, progress=False).params

    out = median_times({"manual": run(train.manual_grad(model)), "autodiff": run(train.autodiff_grad(model))}, repeats)
    out = {name: t / steps for name, t in out.items()}
    t = time.perf_counter()
    numpy_higham(params, np.asarray(x, np.float64), np.asarray(y, np.float64), numpy_steps)
    out["numpy"] = (time.perf_counter() - t) / numpy_steps
    return out


def matrix_backprop_rows(repeats, spiral_steps):
    x, y = jaxmlp.data.random_regression(regression.N, regression.D_IN, regression.D_OUT, dtype=np.float32)
    model = jaxmlp.MLP((regression.D_IN, regression.H, regression.D_OUT), "relu", "sum_squares", use_bias=False)
    params = jaxmlp.init(model, jax.random.key(0), "normal")
    steps = regression.STEPS
    g, opt = train.manual_grad(model), optim.sgd(regression.LR)
    run = lambda: train.train(g, opt, params, x, y, key=jax.random.key(0), steps=steps,
                          log_every=steps, progress=False).params
    jax_t = median_time(run, repeats) / steps
    t = time.perf_counter()
    regression.numpy_reference(np.asarray(params[0].W), np.asarray(params[1].W), x, y, steps)
    np_t = (time.perf_counter() - t) / steps
    xs, ys = jaxmlp.data.spiral()
    smodel = jaxmlp.MLP((2, 100, 3), "relu", "softmax_cross_entropy")
    sp = jaxmlp.init(smodel, jax.random.key(0), "cs231n")
    sg, sopt = train.manual_grad(smodel, l2=1e-3), optim.sgd(1.0)
    srun = lambda: train.train(sg, sopt, sp, xs, ys, key=jax.random.key(0), steps=spiral_steps,
                           log_every=spiral_steps, progress=False).params
    s_jax = median_time(srun, repeats) / spiral_steps
    t = time.perf_counter()
    numpy_spiral(xs.astype(np.float64), ys, spiral_steps)
    s_np = (time.perf_counter() - t) / spiral_steps
    return {"regression 004-a": {"manual": jax_t, "numpy": np_t}, "spiral 004-b": {"manual": s_jax, "numpy": s_np}}


def markdown(res):
    lines = [f"Machine: {res['device']} ({res['backend']}), {res['cpus']} CPUs; jax {res['jax']}; {res['date']}.",
             f"Matmul peak (best float32 square matmul, n = {res['peak_n']}): {res['peak_gflops']:.1f} GFLOP/s.", "",
             "| configuration | manual step | jax.grad step | manual / jax.grad | manual % of peak | FLOP bound at peak | "
             "PyTorch eager | manual speed-up vs PyTorch |", "|---|---|---|---|---|---|---|---|"]
    for name, r in res["configs"].items():
        torch_s = f"{r['torch'] * 1e3:.3f} ms" if r.get("torch") else "n/a"
        speed = f"{r['torch'] / r['manual']:.2f}x" if r.get("torch") else "n/a"
        lines.append(f"| {name} | {r['manual'] * 1e3:.3f} ms | {r['autodiff'] * 1e3:.3f} ms | "
                     f"{r['manual'] / r['autodiff']:.3f} | {100 * r['peak_fraction']:.1f}% | {r['bound'] * 1e3:.3f} ms | "
                     f"{torch_s} | {speed} |")
    h = res["higham"]
    lines += ["", "| loop | jaxmlp per step | numpy per step | speed-up |", "|---|---|---|---|",
              f"| Higham 2-2-3-2, SGD 1 example/step, {res['higham_steps']} steps in one scan (jax.grad: "
              f"{h['autodiff'] * 1e6:.3f} us) | {h['manual'] * 1e6:.3f} us | {h['numpy'] * 1e6:.2f} us | "
              f"{h['numpy'] / h['manual']:.0f}x |"]
    for name, r in res["matrix_backprop"].items():
        lines.append(f"| {name} | {r['manual'] * 1e6:.1f} us | {r['numpy'] * 1e6:.1f} us | {r['numpy'] / r['manual']:.1f}x |")
    lines += ["", "| target | bar | measured | met |", "|---|---|---|---|"]
    for name, (bar, got, ok) in res["targets"].items():
        lines.append(f"| {name} | {bar} | {got if isinstance(got, str) else f'{got:.3g}'} | {'yes' if ok else 'no'} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m experiments bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join("results", "bench"), help="output folder (default results/bench)")
    ap.add_argument("--repeats", type=int, default=7, help="timed repeats per measurement (default 7)")
    ap.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated configurations to time")
    ap.add_argument("--higham-steps", type=int, default=HIGHAM_STEPS, help="Higham SGD steps in one scan")
    ap.add_argument("--numpy-steps", type=int, default=20_000, help="steps timed for the numpy Higham loop")
    ap.add_argument("--spiral-steps", type=int, default=1000, help="steps timed for the 004-b spiral loops")
    args = ap.parse_args(argv)
    names = [c for c in args.configs.split(",") if c]
    unknown = [c for c in names if c not in CONFIGS]
    if unknown or args.repeats < 1:
        raise ValueError(f"--configs/--repeats: expected names from {list(CONFIGS)} and repeats >= 1, got {unknown}, "
                         f"{args.repeats}")
    gpu = jax.default_backend() == "gpu"
    peak, peak_n = matmul_peak(args.repeats, jnp.float32)
    res = {"device": jax.devices()[0].device_kind, "backend": jax.default_backend(), "cpus": os.cpu_count(),
           "jax": jax.__version__, "python": platform.python_version(), "date": date.today().isoformat(),
           "peak_gflops": peak / 1e9, "peak_n": peak_n, "configs": {}, "higham_steps": args.higham_steps}
    for name in names:
        sizes, batch, k, needs_gpu = CONFIGS[name]
        for dtype in ((jnp.float32, jnp.bfloat16) if needs_gpu else (jnp.float32,)):
            if needs_gpu and not gpu:
                continue
            times, problem = time_config(sizes, batch, k, args.repeats, dtype)
            label = name if dtype == jnp.float32 else f"{name} bf16"
            times["peak_fraction"] = flops_per_step(sizes, batch) / times["manual"] / peak
            times["bound"] = flops_done(sizes, batch) / peak  # the step's FLOPs at the measured peak
            times["torch"] = None if gpu else torch_step_time(*problem, args.repeats, k)
            res["configs"][label] = times
            print(f"{label}: manual {times['manual'] * 1e3:.3f} ms, jax.grad {times['autodiff'] * 1e3:.3f} ms, "
                  f"{100 * times['peak_fraction']:.1f}% of peak", flush=True)
    res["higham"] = higham_rows(args.higham_steps, args.numpy_steps, args.repeats)
    res["matrix_backprop"] = matrix_backprop_rows(args.repeats, args.spiral_steps)
    ratios = [r["manual"] / r["autodiff"] for r in res["configs"].values()] + [
        res["higham"]["manual"] / res["higham"]["autodiff"]]
    geo = float(np.exp(np.mean(np.log(ratios))))
    cpu = [r for n, r in res["configs"].items() if not CONFIGS[n.replace(" bf16", "")][3]]
    t784 = res["configs"].get("784-512-512-10", {})
    res["targets"] = {
        "manual / jax.grad, geometric mean": ("<= 1.00", geo, geo <= TARGETS["manual_over_autodiff_geomean"]),
        "manual / jax.grad, worst configuration": ("<= 1.05", max(ratios), max(ratios) <= TARGETS["manual_over_autodiff_max"]),
        "Higham 1e6 steps vs numpy per-example loop": (">= 150x", res["higham"]["numpy"] / res["higham"]["manual"],
                                                       res["higham"]["numpy"] / res["higham"]["manual"] >= 150),
    }
    if cpu and not gpu:
        frac = cpu[-1]["peak_fraction"]
        res["targets"]["largest CPU configuration, fraction of matmul peak"] = (">= 0.90", frac, frac >= 0.90)
    if t784.get("torch"):
        s = t784["torch"] / t784["manual"]
        res["targets"]["784-512-512-10 vs PyTorch eager"] = (">= 1.5x", s, s >= 1.5)
        best = t784["torch"] / t784["bound"]
        res["targets"]["784-512-512-10 vs PyTorch eager, best possible at the matmul peak"] = (
            "(bound)", best, best >= 1.5)
    if gpu:
        fr = [r["peak_fraction"] for n, r in res["configs"].items() if n.startswith("4096")]
        res["targets"]["GPU large configurations, fraction of matmul peak"] = (">= 0.70", min(fr), min(fr) >= 0.70)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = markdown(res)
    common.write_json(out / "benchmark.json", res)
    write_atomic(out / "benchmark.md", table)
    print(table)
    return 0


if __name__ == "__main__":
    main()
