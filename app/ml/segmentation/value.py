"""Predicted customer value: BG/NBD for orders and being alive, Gamma-Gamma for spend.

Models
------
BG/NBD (Fader, Hardie & Lee 2005, "Counting your customers the easy way"): while alive a
customer orders as a Poisson process of rate lambda ~ Gamma(r, alpha); after every repeat
order they drop out with probability p ~ Beta(a, b). Gamma-Gamma (Fader & Hardie 2013, "The
Gamma-Gamma model of monetary value"): a customer's order values are Gamma(p, nu) with
nu ~ Gamma(q, v), independent of the order process. Both are fitted by maximum likelihood on
log-parameters with ``scipy.optimize.minimize`` (L-BFGS-B); the likelihoods are evaluated in log
space with ``gammaln``/``betaln``, the expected orders' hypergeometric term in log space with
the convergent form per customer (:func:`_log_bgnbd_h`), so nothing overflows for customers with
hundreds of orders nor for the large ``a``, ``b`` of a shop whose customers rarely drop out.

Per-customer inputs (days, from :class:`~app.ml.segmentation.features.CustomerAggregates`):
``x`` repeat orders (orders - 1), ``t_x`` days from the first to the last order, ``T`` days from
the first order to the data's clock, ``m`` mean value of the repeat orders.

Data-sufficiency gate
---------------------
Predictions are published only when the fit data holds at least ``MIN_REPEAT_CUSTOMERS`` (30)
customers with a repeat order and ``MIN_HISTORY_DAYS`` (90) days from its first order to its
end (the data's clock), and the fit converges inside the parameter space with finite
forecasts. Otherwise :class:`CustomerValue` is fitted as *unpublished* and every prediction
carries the reason. Spend also needs ``MIN_REPEAT_CUSTOMERS`` repeat customers with a positive
mean and the fitted ``q > 1`` (the Gamma-Gamma mean is finite only then); without it orders are
published and spend is not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import minimize
from scipy.special import betaln, expit, gammaln, hyp2f1, logsumexp

from app.ml.interactions import SECONDS_PER_DAY
from app.ml.segmentation.features import CustomerAggregates

__all__ = [
    "CHURN_RISKS",
    "CHURN_RISK_EDGES",
    "HORIZON_DAYS",
    "MIN_HISTORY_DAYS",
    "MIN_REPEAT_CUSTOMERS",
    "CustomerValue",
    "ValueInputs",
    "ValuePrediction",
    "bgnbd_expected_orders",
    "bgnbd_log_likelihood",
    "bgnbd_p_alive",
    "churn_risk",
    "fit_bgnbd",
    "fit_gamma_gamma",
    "gamma_gamma_expected_value",
    "gamma_gamma_log_likelihood",
    "value_inputs",
]

HORIZON_DAYS = 90.0
MIN_REPEAT_CUSTOMERS = 30
MIN_HISTORY_DAYS = 90.0
_LOG_BOUNDS = (-12.0, 12.0)  # log-parameters stay within e^-12 .. e^12


@dataclass(frozen=True, eq=False)
class ValueInputs:
    """Per-customer inputs of the value models, arrays of shape (n_customers,).

    ``bought`` is False for customers without a purchase (their other figures are 0/NaN);
    ``m`` is NaN without a repeat order.
    """

    bought: NDArray[np.bool_]
    x: NDArray[np.float64]
    t_x: NDArray[np.float64]
    T: NDArray[np.float64]
    m: NDArray[np.float64]


def value_inputs(agg: CustomerAggregates) -> ValueInputs:
    """Repeat orders, recency, age (days) and mean repeat-order value from the aggregates."""
    orders = np.asarray(agg.orders, dtype=np.float64)
    first = np.asarray(agg.first_purchase_at, dtype=np.float64)
    last = np.asarray(agg.last_purchase_at, dtype=np.float64)
    bought = (orders > 0) & np.isfinite(first) & np.isfinite(last)
    x = np.where(bought, orders - 1.0, 0.0)
    t_x = np.where(bought, np.maximum(last - first, 0.0) / SECONDS_PER_DAY, 0.0)
    T = np.where(bought, np.maximum(agg.now - first, 0.0) / SECONDS_PER_DAY, 0.0)
    repeat_spend = np.asarray(agg.monetary, dtype=np.float64) - agg.first_order_value
    m = np.where(bought & (x > 0), repeat_spend / np.maximum(x, 1.0), np.nan)
    return ValueInputs(bought=bought, x=x, t_x=np.minimum(t_x, T), T=T, m=m)


# -- BG/NBD -----------------------------------------------------------------------------------


def bgnbd_log_likelihood(
    params: ArrayLike, x: ArrayLike, t_x: ArrayLike, T: ArrayLike
) -> NDArray[np.float64]:
    """Per-customer BG/NBD log-likelihood (Fader, Hardie & Lee 2005, eq. 6), shape (n,).

    ``params`` is (r, alpha, a, b); ``x``, ``t_x``, ``T`` arrays of shape (n,).
    """
    r, alpha, a, b = (float(v) for v in np.asarray(params, dtype=np.float64))
    x, t_x, T = (np.asarray(v, dtype=np.float64) for v in (x, t_x, T))
    a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    a2 = betaln(a, b + x) - betaln(a, b)
    a3 = -(r + x) * np.log(alpha + T)
    # The dropped-out branch exists only after a repeat order: p (1-p)^(x-1) over B(a, b).
    a4 = np.where(
        x > 0,
        np.log(a) - np.log(np.maximum(b + x - 1.0, 1e-300)) - (r + x) * np.log(alpha + t_x),
        -np.inf,
    )
    return a1 + a2 + np.logaddexp(a3, a4)


def bgnbd_p_alive(
    params: ArrayLike, x: ArrayLike, t_x: ArrayLike, T: ArrayLike
) -> NDArray[np.float64]:
    """P(alive at T | x, t_x, T), shape (n,); 1 for customers without a repeat order."""
    r, alpha, a, b = (float(v) for v in np.asarray(params, dtype=np.float64))
    x, t_x, T = (np.asarray(v, dtype=np.float64) for v in (x, t_x, T))
    log_odds_dead = (
        np.log(a)
        - np.log(b + np.maximum(x, 1.0) - 1.0)
        + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x))
    )
    return np.where(x > 0, expit(-log_odds_dead), 1.0)


def _log_hyp2f1_series(A: float, B: float, C: float, z: float) -> float:
    """log 2F1(A, B; C; z) by its series summed in log space; A, B, C > 0 and 0 <= z < 1.

    Every term is positive, so the sum is exact up to rounding however far out the largest
    term lies (near ``n = A z / (1 - z)`` for a heavy buyer); NaN after 10^7 terms.
    """
    if z <= 0.0:
        return 0.0
    log_sum, log_term, n, chunk = 0.0, 0.0, 0, 4096
    while n < 10_000_000:
        k = n + np.arange(chunk, dtype=np.float64)
        steps = np.log(A + k) + np.log(B + k) - np.log(C + k) - np.log1p(k) + np.log(z)
        logs = log_term + np.cumsum(steps)
        log_sum, log_term, n = float(np.logaddexp(log_sum, logsumexp(logs))), logs[-1], n + chunk
        if steps[-1] < 0.0 and log_term < log_sum - 50.0 + np.log1p(-np.exp(steps[-1])):
            return log_sum
    return float("nan")


def _log_bgnbd_h(
    params: NDArray[np.float64],
    t: float,
    x: NDArray[np.float64],
    T: NDArray[np.float64],
) -> NDArray[np.float64]:
    """log of ``2F1(r+x, b+x; a+b+x-1; z) (1-z)^(r+x)``, ``z = t / (alpha+T+t)``, shape (n,).

    Each factor alone over- or underflows somewhere: the paper's form for heavy buyers
    (``x`` in the hundreds), Euler's ``(1-z)^(a-1) 2F1(a+b-1-r, a-1; a+b+x-1; z)`` for large
    ``a`` and ``b`` (thousands, as a shop whose customers hardly drop out fits). Like lifetimes'
    ``BetaGeoFitter``, the paper's form is used where scipy's ``hyp2f1`` is finite and Euler's
    where that is not; where neither is, the paper's series is summed in log space.
    """
    r, alpha, a, b = params
    z = t / (alpha + T + t)
    log_1mz = np.log(alpha + T) - np.log(alpha + T + t)
    c = a + b + x - 1.0
    with np.errstate(all="ignore"):
        direct = np.log(hyp2f1(r + x, b + x, c, z)) + (r + x) * log_1mz
        euler = np.log(hyp2f1(a + b - 1.0 - r, a - 1.0, c, z)) + (a - 1.0) * log_1mz
    out = np.where(np.isfinite(direct), direct, euler)
    for i in np.flatnonzero(~np.isfinite(out)):
        series = _log_hyp2f1_series(r + x[i], b + x[i], c[i], z[i])
        out[i] = series + (r + x[i]) * log_1mz[i]
    return np.asarray(out, dtype=np.float64)


def bgnbd_expected_orders(
    params: ArrayLike, t: float, x: ArrayLike, t_x: ArrayLike, T: ArrayLike
) -> NDArray[np.float64]:
    """E[orders in (T, T + t] | x, t_x, T] (Fader, Hardie & Lee 2005, eq. 10), shape (n,).

    ``(a+b+x-1)/(a-1) (1 - H) / (1 + odds of having dropped out)``, with ``H`` from
    :func:`_log_bgnbd_h` in log space, finite over the whole parameter range.
    """
    p = np.asarray(params, dtype=np.float64)
    r, alpha, a, b = (float(v) for v in p)
    x, t_x, T = (np.asarray(v, dtype=np.float64) for v in (x, t_x, T))
    # -expm1 keeps 1 - H accurate when H is close to 1 (a short horizon).
    numerator = (a + b + x - 1.0) / (a - 1.0) * -np.expm1(_log_bgnbd_h(p, t, x, T))
    log_ratio = np.log(a) - np.log(np.maximum(b + x - 1.0, 1e-300))
    log_ratio = log_ratio + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x))
    denominator = 1.0 + np.where(x > 0, np.exp(np.minimum(log_ratio, 700.0)), 0.0)
    return np.asarray(numerator / denominator, dtype=np.float64)


def _fit_log_params(
    neg_ll: Any, start: NDArray[np.float64]
) -> tuple[NDArray[np.float64] | None, str | None]:
    """Minimise ``neg_ll`` over log-parameters; the parameters, or why the fit failed."""
    result = minimize(neg_ll, start, method="L-BFGS-B", bounds=[_LOG_BOUNDS] * start.shape[0])
    params = np.exp(result.x)
    if not np.all(np.isfinite(params)) or not np.isfinite(result.fun):
        return None, f"the fit did not converge ({result.message})"
    on_bound = np.isclose(np.abs(result.x), _LOG_BOUNDS[1], atol=1e-3)
    if on_bound.any():
        return None, "the fit ran to the edge of the parameter space (degenerate data)"
    return params, None


def fit_bgnbd(
    x: ArrayLike, t_x: ArrayLike, T: ArrayLike
) -> tuple[NDArray[np.float64] | None, str | None]:
    """Maximum-likelihood (r, alpha, a, b) of BG/NBD, or None and why the fit failed."""
    x, t_x, T = (np.asarray(v, dtype=np.float64) for v in (x, t_x, T))
    # Customers sharing (x, t_x, T) share a likelihood term: collapse them (ties are common).
    keys, counts = np.unique(np.column_stack([x, t_x, T]), axis=0, return_counts=True)
    xs, txs, Ts = keys[:, 0], keys[:, 1], keys[:, 2]
    n = float(counts.sum())

    def neg_ll(log_params: NDArray[np.float64]) -> float:
        return float(-np.dot(counts, bgnbd_log_likelihood(np.exp(log_params), xs, txs, Ts)) / n)

    # Start from the method-of-moments-ish guess: rate = orders per day, a small dropout.
    rate = max(float(np.sum(x) / max(np.sum(T), 1e-9)), 1e-6)
    start = np.log(np.array([1.0, 1.0 / rate, 1.0, 3.0]))
    return _fit_log_params(neg_ll, start)


# -- Gamma-Gamma ------------------------------------------------------------------------------


def gamma_gamma_log_likelihood(
    params: ArrayLike, x: ArrayLike, m: ArrayLike
) -> NDArray[np.float64]:
    """Per-customer Gamma-Gamma log-likelihood of mean order value ``m`` over ``x`` orders.

    ``params`` is (p, q, v); customers need ``x > 0`` and ``m > 0``. Shape (n,).
    """
    p, q, v = (float(w) for w in np.asarray(params, dtype=np.float64))
    x, m = (np.asarray(w, dtype=np.float64) for w in (x, m))
    px = p * x
    return (
        gammaln(px + q)
        - gammaln(px)
        - gammaln(q)
        + q * np.log(v)
        + (px - 1.0) * np.log(m)
        + px * np.log(x)
        - (px + q) * np.log(x * m + v)
    )


def fit_gamma_gamma(x: ArrayLike, m: ArrayLike) -> tuple[NDArray[np.float64] | None, str | None]:
    """Maximum-likelihood (p, q, v) of Gamma-Gamma, or None and why the fit failed."""
    x, m = (np.asarray(w, dtype=np.float64) for w in (x, m))

    def neg_ll(log_params: NDArray[np.float64]) -> float:
        return float(-np.mean(gamma_gamma_log_likelihood(np.exp(log_params), x, m)))

    start = np.log(np.array([1.0, 2.0, float(np.mean(m))]))
    return _fit_log_params(neg_ll, start)


def gamma_gamma_expected_value(
    params: ArrayLike, x: ArrayLike, m: ArrayLike
) -> NDArray[np.float64]:
    """E[order value | x, m]: the population mean shrunk towards the customer's, shape (n,).

    Customers without a repeat order (``x`` 0, ``m`` NaN) get the population mean
    ``p v / (q - 1)``; needs ``q > 1``.
    """
    p, q, v = (float(w) for w in np.asarray(params, dtype=np.float64))
    x = np.asarray(x, dtype=np.float64)
    m = np.nan_to_num(np.asarray(m, dtype=np.float64), nan=0.0)
    return np.asarray(p * (v + x * m) / (p * x + q - 1.0), dtype=np.float64)


# -- the estimator ----------------------------------------------------------------------------

#: Churn-risk groups from P(alive): high below 0.3, medium below 0.7, low from 0.7.
CHURN_RISK_EDGES: tuple[float, float] = (0.3, 0.7)
CHURN_RISKS: tuple[str, ...] = ("high", "medium", "low")
NO_PURCHASE_REASON = "no purchase yet"


def churn_risk(p_alive: NDArray[np.float64]) -> NDArray[np.str_]:
    """ "high", "medium" or "low" from P(alive) by ``CHURN_RISK_EDGES``; "" where NaN."""
    p = np.asarray(p_alive, dtype=np.float64)
    groups = np.asarray(CHURN_RISKS)[np.searchsorted(CHURN_RISK_EDGES, np.nan_to_num(p), "right")]
    return np.where(np.isnan(p), "", groups)


@dataclass(frozen=True, eq=False)
class ValuePrediction:
    """Predicted value of customers, arrays of shape (n_customers,); NaN where unpublished.

    ``reason`` says why a customer's figures are missing ("" where all are published).
    ``churn_risk`` is "high", "medium", "low", or "" without P(alive).
    """

    horizon_days: float
    p_alive: NDArray[np.float64]
    expected_orders: NDArray[np.float64]
    expected_spend: NDArray[np.float64]
    churn_risk: NDArray[np.str_]
    reason: NDArray[np.str_]

    def to_dict(self, i: int) -> dict[str, Any]:
        """Customer ``i``'s figures as JSON-able values (None where unpublished)."""

        def num(a: NDArray[np.float64]) -> float | None:
            return None if np.isnan(a[i]) else float(a[i])

        return {
            "p_alive": num(self.p_alive),
            "expected_orders": num(self.expected_orders),
            "expected_spend": num(self.expected_spend),
            "horizon_days": self.horizon_days,
            "reason": str(self.reason[i]) or None,
        }


class CustomerValue:
    """BG/NBD + Gamma-Gamma predicted value behind a data-sufficiency gate.

    Parameters
    ----------
    horizon_days : float
        The period the expected orders and spend cover.
    min_repeat_customers : int
        Customers with a repeat order the fit needs (and, with a positive mean value, the
        spend fit).
    min_history_days : float
        Days between the first and the last order of the data the fit needs.
    """

    #: (r, alpha, a, b) and (p, q, v), None when unpublished; and why.
    bgnbd_params_: NDArray[np.float64] | None
    gamma_gamma_params_: NDArray[np.float64] | None
    unpublished_: str | None
    spend_unpublished_: str | None

    def __init__(
        self,
        *,
        horizon_days: float = HORIZON_DAYS,
        min_repeat_customers: int = MIN_REPEAT_CUSTOMERS,
        min_history_days: float = MIN_HISTORY_DAYS,
    ) -> None:
        self.horizon_days = horizon_days
        self.min_repeat_customers = min_repeat_customers
        self.min_history_days = min_history_days

    def fit(self, inputs: ValueInputs) -> CustomerValue:
        """Fit BG/NBD on every purchaser and Gamma-Gamma on repeat customers, if the data can."""
        b = inputs.bought
        x, t_x, T, m = inputs.x[b], inputs.t_x[b], inputs.T[b], inputs.m[b]
        self.data_ = {
            "customers": int(b.sum()),
            "repeat_customers": int(np.sum(x > 0)),
            "history_days": float(np.max(T, initial=0.0)),
        }
        self.bgnbd_params_, self.unpublished_ = None, self._gate(self.data_)
        self.gamma_gamma_params_, self.spend_unpublished_ = None, self.unpublished_
        if self.unpublished_ is None:
            params, why = fit_bgnbd(x, t_x, T)
            if (
                params is not None
                and not np.isfinite(
                    bgnbd_expected_orders(params, self.horizon_days, x, t_x, T)
                ).all()
            ):  # a = 1 exactly
                params, why = None, "its forecasts are not finite on the fit data"
            self.bgnbd_params_ = params
            self.unpublished_ = None if why is None else f"orders model: {why}"
        if self.unpublished_ is None:
            self.gamma_gamma_params_, self.spend_unpublished_ = self._fit_spend(x, m)
        return self

    def _gate(self, data: dict[str, Any]) -> str | None:
        """Why the data cannot support predictions (see the module docstring), or None."""
        if data["repeat_customers"] < self.min_repeat_customers:
            return (
                f"too little data: {data['repeat_customers']} customers with a repeat order, "
                f"predictions need {self.min_repeat_customers}"
            )
        if data["history_days"] < self.min_history_days:
            return (
                f"too short a history: {data['history_days']:.0f} days of orders, "
                f"predictions need {self.min_history_days:.0f}"
            )
        return None

    def _fit_spend(
        self, x: NDArray[np.float64], m: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64] | None, str | None]:
        """Gamma-Gamma on repeat customers with a positive mean value; params or why not."""
        ok = (x > 0) & (np.nan_to_num(m) > 0)
        if int(ok.sum()) < self.min_repeat_customers:
            return None, (
                f"spend model: {int(ok.sum())} repeat customers with a positive order value, "
                f"it needs {self.min_repeat_customers}"
            )
        params, why = fit_gamma_gamma(x[ok], m[ok])
        if params is None:
            return None, f"spend model: {why}"
        if params[1] <= 1.0:
            return None, f"spend model: q = {params[1]:.3g} <= 1, the mean order value is unbounded"
        return params, None

    def predict(self, inputs: ValueInputs) -> ValuePrediction:
        """P(alive), expected orders and spend over ``horizon_days`` of every customer."""
        self._check_fitted()
        n, b = inputs.bought.shape[0], inputs.bought
        p_alive, orders, spend = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
        reason = np.where(b, self.unpublished_ or "", NO_PURCHASE_REASON)
        if self.bgnbd_params_ is not None and b.any():
            x, t_x, T = inputs.x[b], inputs.t_x[b], inputs.T[b]
            p_alive[b] = bgnbd_p_alive(self.bgnbd_params_, x, t_x, T)
            orders[b] = bgnbd_expected_orders(self.bgnbd_params_, self.horizon_days, x, t_x, T)
            if self.gamma_gamma_params_ is not None:
                # The spend model knows only positive means: others count as no repeat order.
                ok = (x > 0) & (np.nan_to_num(inputs.m[b]) > 0)
                mean_value = gamma_gamma_expected_value(
                    self.gamma_gamma_params_, np.where(ok, x, 0.0), np.where(ok, inputs.m[b], 0.0)
                )
                spend[b] = orders[b] * mean_value
            else:
                reason = np.where(b, self.spend_unpublished_ or "", reason)
        return ValuePrediction(
            self.horizon_days, p_alive, orders, spend, churn_risk(p_alive), reason
        )

    def report(self) -> dict[str, Any]:
        """JSON-able parameters, gate figures and reasons, for the model's metrics."""
        self._check_fitted()

        def named(names: str, values: NDArray[np.float64] | None) -> dict[str, float] | None:
            if values is None:
                return None
            return dict(zip(names.split(), (float(v) for v in values), strict=True))

        return {
            "published": self.unpublished_ is None,
            "reason": self.unpublished_,
            "spend_reason": self.spend_unpublished_,
            "horizon_days": self.horizon_days,
            "gate": {
                "min_repeat_customers": self.min_repeat_customers,
                "min_history_days": self.min_history_days,
            },
            "data": dict(self.data_),
            "bgnbd": named("r alpha a b", self.bgnbd_params_),
            "gamma_gamma": named("p q v", self.gamma_gamma_params_),
        }

    def to_meta(self) -> dict[str, Any]:
        """JSON-able state (a handful of floats): :meth:`from_meta` rebuilds the model."""
        return {
            "params": {
                "horizon_days": self.horizon_days,
                "min_repeat_customers": self.min_repeat_customers,
                "min_history_days": self.min_history_days,
            },
            **self.report(),
        }

    @classmethod
    def from_meta(cls, meta: dict[str, Any] | None) -> CustomerValue:
        """Rebuild from :meth:`to_meta`; a state without one (an older bundle) is unpublished."""
        if meta is None:
            model = cls()
            model.data_ = {}
            model.bgnbd_params_ = model.gamma_gamma_params_ = None
            model.unpublished_ = model.spend_unpublished_ = (
                "this model version was trained before predicted value existed: retrain"
            )
            return model
        model = cls(**meta["params"])
        model.data_ = dict(meta["data"])
        model.unpublished_, model.spend_unpublished_ = meta["reason"], meta["spend_reason"]
        for attr, key, names in (
            ("bgnbd_params_", "bgnbd", ("r", "alpha", "a", "b")),
            ("gamma_gamma_params_", "gamma_gamma", ("p", "q", "v")),
        ):
            values = meta.get(key)
            setattr(model, attr, None if values is None else np.array([values[k] for k in names]))
        return model

    def _check_fitted(self) -> None:
        if not hasattr(self, "unpublished_"):
            raise RuntimeError("this CustomerValue is not fitted yet: call fit() or from_meta()")
