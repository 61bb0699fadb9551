"""Which of the user's lines comes first when the first wrong value is clear but the line to fix is another
(verification/checker/backward/line_order.py, first_wrong.py): a line that only scales a wrong value, a rename of a wrong
statement's result, a right value that one of its readers should transpose, a mask built with the wrong
condition, a where's inverted condition, a wrong term of a sum, a term left out after an accumulator's zero
start.  Each bug is written the way people write it, in code of its own (not the catalogue's)."""

import jax
import jax.numpy as jnp

from verification import check_gradients
from verification.catalogue.backward import line_of, ranked

M, N, K = 6, 4, 3
X = jax.random.normal(jax.random.PRNGKey(0), (M, N))
Y = jax.random.normal(jax.random.PRNGKey(1), (M, K))
LABELS = jax.nn.one_hot(jnp.arange(M) % K, K)
SIGNS = jnp.where(jnp.arange(M) % 2 == 0, 1.0, -1.0)


def failing(loss, grad, p, *args):
    report = check_gradients(loss, grad, p, *args)
    assert not report.passed and report.backward is not None, report.summary()
    return report


# a line that only divides by m: the chain rule's mistake is made where the divided value is computed
def log_cosh_loss(p, x, y):
    return jnp.mean(jnp.sum(jnp.log(jnp.cosh(x @ p["W"] - y)), axis=1))


def log_cosh_grad(p, x, y):
    r = x @ p["W"] - y
    g = 1 / jnp.cosh(r)  # (the derivative of log is 1/cosh; cosh's own sinh forgotten)
    g = g / x.shape[0]
    return {"W": x.T @ g}


def test_a_line_that_only_scales_is_not_blamed_for_what_it_scales():
    report = failing(log_cosh_loss, log_cosh_grad, {"W": 0.5 * X[:N, :K]}, X, Y)
    assert ranked(report)[0] == line_of(log_cosh_grad, "g = 1 / jnp.cosh(r)"), report.backward.lines


# bilinear scores: ds is read by two products, and the second should read it transposed
def scores_loss(p, x, t):
    s = (x @ p["Wq"]) @ (x @ p["Wk"]).T
    return jnp.sum(jnp.tanh(s) * t)


def scores_grad(p, x, t, bug):
    q, k = x @ p["Wq"], x @ p["Wk"]
    s = q @ k.T
    ds = (1 - jnp.tanh(s) ** 2) * t
    dq = ds.T @ k if bug == "dq" else ds @ k
    dq = dq if bug != "never" else 2 * dq  # (a rename of dq, as code with options writes it)
    dk = ds @ q if bug == "dk" else ds.T @ q
    return {"Wq": x.T @ dq, "Wk": x.T @ dk}


SCORES = {"Wq": 0.4 * jax.random.normal(jax.random.PRNGKey(4), (N, K)),
          "Wk": 0.4 * jax.random.normal(jax.random.PRNGKey(5), (N, K))}
T = jax.random.normal(jax.random.PRNGKey(6), (M, M))


def test_a_right_value_read_untransposed_by_one_of_its_readers_names_that_reader():
    report = failing(scores_loss, lambda p, x, t: scores_grad(p, x, t, "dk"), SCORES, X, T)
    assert ranked(report)[0] == line_of(scores_grad, "dk = ds @ q if"), report.backward.lines


def test_a_rename_of_the_wrong_statements_result_is_not_blamed_before_it():
    report = failing(scores_loss, lambda p, x, t: scores_grad(p, x, t, "dq"), SCORES, X, T)
    assert ranked(report)[0] == line_of(scores_grad, "dq = ds.T @ k if"), report.backward.lines


# a binary hinge whose active set leaves the margin out: the mask's condition is the line to fix
def hinge_loss(p, x, y):
    return jnp.mean(jnp.maximum(0.0, 1.0 - y * (x @ p["w"])))


def hinge_grad(p, x, y):
    s = x @ p["w"]
    active = (y * s < 0).astype(s.dtype)  # (the margin 1 left out: y * s < 1 belongs)
    ds = -y * active / x.shape[0]
    return {"w": x.T @ ds}


def test_a_mask_with_the_wrong_condition_names_the_condition():
    w = 0.7 * jax.random.normal(jax.random.PRNGKey(7), (N,))
    report = failing(hinge_loss, hinge_grad, {"w": w}, X, SIGNS)
    assert ranked(report)[0] == line_of(hinge_grad, "active = (y * s < 0)"), report.backward.lines


# max pooling over pairs, its backward written as average pooling's (the loss's side names the selection)
def pool_loss(p, x, y):
    u = jnp.tanh(x @ p["W"]).reshape(x.shape[0], -1, 2)
    return 0.5 * jnp.mean(jnp.sum((jnp.max(u, axis=2) @ p["V"] - y) ** 2, axis=1))


def pool_grad(p, x, y):
    h = jnp.tanh(x @ p["W"])
    u = h.reshape(x.shape[0], -1, 2)
    pooled = jnp.max(u, axis=2)
    d = (pooled @ p["V"] - y) / x.shape[0]
    dpooled = d @ p["V"].T
    share = jnp.full_like(u, 0.5)  # (each of the pair gets half: average pooling's backward)
    du = (share * dpooled[:, :, None]).reshape(h.shape)
    return {"W": x.T @ (du * (1 - h ** 2)), "V": pooled.T @ d}


def test_a_selection_spread_over_the_window_names_the_spreading_line():
    p = {"W": 0.5 * jax.random.normal(jax.random.PRNGKey(11), (N, 8)),
         "V": 0.5 * jax.random.normal(jax.random.PRNGKey(12), (4, K))}
    report = failing(pool_loss, pool_grad, p, X, Y)
    assert ranked(report)[0] == line_of(pool_grad, "share = jnp.full_like"), report.backward.lines


# max(a, b) of two linear maps: the where that routes the cotangent reads an inverted condition
def max_loss(p, x, y):
    return 0.5 * jnp.mean(jnp.sum((jnp.maximum(x @ p["A"], x @ p["B"]) - y) ** 2, axis=1))


def max_grad(p, x, y):
    a, b = x @ p["A"], x @ p["B"]
    d = (jnp.maximum(a, b) - y) / x.shape[0]
    pick_a = a < b
    da, db = jnp.where(pick_a, d, 0.0), jnp.where(pick_a, 0.0, d)
    return {"A": x.T @ da, "B": x.T @ db}


def test_an_inverted_where_condition_is_among_the_first_three():
    p = {"A": 0.5 * jax.random.normal(jax.random.PRNGKey(8), (N, K)),
         "B": 0.5 * jax.random.normal(jax.random.PRNGKey(9), (N, K))}
    report = failing(max_loss, max_grad, p, X, Y)
    assert line_of(max_grad, "pick_a = a < b") in ranked(report)[:3], report.backward.lines


# a log-normal scale: one term of a sum keeps a factor 2 (exp(v / 2)'s half forgotten)
def scale_loss(p, x, y):
    v = x @ p["V"]
    return jnp.sum((jnp.exp(0.5 * v) * y - 1.0) ** 2) / x.shape[0] + jnp.sum(jnp.exp(v)) / x.shape[0]


def scale_grad(p, x, y):
    v = x @ p["V"]
    sd = jnp.exp(0.5 * v)
    from_fit = 2 * (sd * y - 1.0) * y * sd / x.shape[0]  # (times 1/2 from exp(v / 2) forgotten)
    from_prior = jnp.exp(v) / x.shape[0]
    dv = from_fit + from_prior
    return {"V": x.T @ dv}


def test_a_wrong_term_of_a_sum_is_among_the_first_three():
    report = failing(scale_loss, scale_grad, {"V": 0.3 * X[:N, :K]}, X, Y)
    assert line_of(scale_grad, "from_fit = 2 *") in ranked(report)[:3], report.backward.lines


# a transition matrix's gradient accumulated over steps, its observed-pairs term set aside as zero
def pairs_loss(p, x, y):
    a = p["A"]
    return sum(jnp.sum(jnp.exp(a + x[t][:, None] - x[t + 1][None, :])) for t in range(M - 1)) \
        - jnp.sum(a * (y[:-1].T @ y[1:]))


def pairs_grad(p, x, y):
    a = p["A"]
    edge = jnp.zeros_like(a)
    for t in range(M - 1):
        edge = edge + jnp.exp(a + x[t][:, None] - x[t + 1][None, :])
    observed = 0.0  # (y[:-1].T @ y[1:] meant; left for later)
    return {"A": edge - observed}


def test_a_term_left_as_zero_is_named_before_the_accumulators_start():
    p = {"A": 0.3 * jax.random.normal(jax.random.PRNGKey(10), (K, K))}
    report = failing(pairs_loss, pairs_grad, p, 0.3 * Y, LABELS)
    assert ranked(report)[0] in (line_of(pairs_grad, "observed = 0.0"), line_of(pairs_grad, "edge - observed")), \
        report.backward.lines
