"""Every check of ``python -m verification``, in one explicit list.

A check is a generator of :class:`verification.suite.rows.Row`; ``prefixes`` are the
row-name prefixes it can yield, so ``--only`` can skip a check without running it.
"""
from __future__ import annotations

from typing import Callable, Iterator, NamedTuple, Optional, Sequence, Tuple

from verification.suite import batchnorm
from verification.suite import layers
from verification.suite import levenberg_marquardt
from verification.suite import network
from verification.suite import no_bias
from verification.suite import optim_params
from verification.suite import optimizers
from verification.suite import rule_rows
from verification.suite import weighted
from verification.suite.rows import Row


class Check(NamedTuple):
    prefixes: Tuple[str, ...]
    rows: Callable[[], Iterator[Row]]

    @property
    def name(self) -> str:
        return self.rows.__name__

    def selected(self, only: Optional[Sequence[str]]) -> bool:
        """Whether this check can yield a row matching one of the ``only`` prefixes."""
        return only is None or any(o.startswith(p) or p.startswith(o) for o in only for p in self.prefixes)


CHECKS = (
    Check(("layer/dense",), layers.dense_layer),
    Check(("layer/activation",), layers.activations),
    Check(("head/",), layers.heads),
    Check(("layer/penalty",), layers.regularizers),
    Check(("net/matrix", "net/lemma1"), network.network_grid),
    Check(("net/f32",), network.network_float32),
    Check(("net/finite_diff",), network.network_finite_differences),
    Check(("net/check_grads",), network.network_check_grads),
    Check(("net/weighted",), weighted.weighted_rows),
    Check(("net/padding",), weighted.padding_rows),
    Check(("net/no_bias",), no_bias.no_bias_rows),
    Check(("optim/",), optimizers.optimizer_trajectories),
    Check(("optim/no_params",), optim_params.no_params_rows),
    Check(("bn/layer",), batchnorm.bn_layer),
    Check(("bn/net",), batchnorm.bn_network),
    Check(("lm/jacobian",), levenberg_marquardt.jacobians),
    Check(("lm/step",), levenberg_marquardt.step_forms),
    Check(("lm/erratum", "lm/woodbury"), levenberg_marquardt.woodbury_errata),
    Check(("rules/loss_with_manual_vjp",), rule_rows.manual_vjp_rows),
    Check(("rules/layer", "rules/head"), rule_rows.layer_rows),
    Check(("rules/gauss_newton",), rule_rows.gauss_newton_rows),
)


def run_checks(only: Optional[Sequence[str]] = None) -> Iterator[Row]:
    """Every check's rows, or only those whose names start with one of ``only``."""
    for check in CHECKS:
        if not check.selected(only):
            continue
        for row in check.rows():
            if only is None or any(row.name.startswith(s) for s in only):
                yield row
