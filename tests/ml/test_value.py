"""Predicted value: BG/NBD and Gamma-Gamma recover known parameters; formulas match the papers."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy.special import hyp2f1

from app.ml.segmentation.holdout import value_holdout
from app.ml.segmentation.value import (
    CustomerValue,
    ValueInputs,
    bgnbd_expected_orders,
    bgnbd_log_likelihood,
    bgnbd_p_alive,
    churn_risk,
    fit_bgnbd,
    fit_gamma_gamma,
    gamma_gamma_expected_value,
)

# CDNOW estimates (weeks) published by Fader, Hardie & Lee (2005).
CDNOW = np.array([0.243, 4.414, 0.793, 2.426])


def simulate_orders(
    rng: np.random.Generator, n: int, params: NDArray[np.float64], T_max: float
) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.float64]]:
    """Repeat orders of ``n`` customers drawn from the BG/NBD process itself (no model formula).

    Each customer's first order is at 0; T is uniform in [T_max / 4, T_max]. While alive they
    order at Poisson rate lambda ~ Gamma(r, rate alpha); after each repeat order they drop out
    with probability p ~ Beta(a, b). Returns each repeat order's customer and time, and T.
    """
    r, alpha, a, b = params
    lam = rng.gamma(r, 1.0 / alpha, n)
    p = rng.beta(a, b, n)
    T = rng.uniform(T_max / 4, T_max, n)
    now = np.zeros(n)
    who: list[NDArray[np.int64]] = []
    when: list[NDArray[np.float64]] = []
    active = np.ones(n, dtype=bool)
    while active.any():
        idx = np.flatnonzero(active)
        now[idx] += rng.exponential(1.0 / lam[idx])
        ordered = now[idx] <= T[idx]
        hit = idx[ordered]
        who.append(hit)
        when.append(now[hit].copy())
        dropped = rng.random(hit.shape[0]) < p[hit]
        active[idx[~ordered]] = False
        active[hit[dropped]] = False
    return np.concatenate(who), np.concatenate(when), T


def simulate_bgnbd(
    rng: np.random.Generator, n: int, params: NDArray[np.float64], T_max: float
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """x, t_x, T of ``n`` customers simulated by :func:`simulate_orders`."""
    who, when, T = simulate_orders(rng, n, params, T_max)
    x = np.bincount(who, minlength=n).astype(np.float64)
    t_x = np.zeros(n)
    np.maximum.at(t_x, who, when)
    return x, t_x, T


def test_bgnbd_recovers_the_parameters_it_was_simulated_with() -> None:
    rng = np.random.default_rng(7)
    true = np.array([0.5, 8.0, 0.8, 2.5])
    x, t_x, T = simulate_bgnbd(rng, 20_000, true, T_max=365.0)
    params, why = fit_bgnbd(x, t_x, T)
    assert why is None and params is not None
    print("bgnbd true", true, "fitted", params)
    np.testing.assert_allclose(params, true, rtol=0.15)


def test_gamma_gamma_recovers_the_parameters_it_was_simulated_with() -> None:
    rng = np.random.default_rng(11)
    p, q, v = 6.0, 4.0, 15.0
    n = 10_000
    x = rng.integers(1, 12, n).astype(np.float64)
    nu = rng.gamma(q, 1.0 / v, n)  # each customer's rate: values are Gamma(p, rate nu)
    m = rng.gamma(p * x, 1.0 / nu) / x  # the mean of x order values
    params, why = fit_gamma_gamma(x, m)
    assert why is None and params is not None
    print("gamma-gamma true", (p, q, v), "fitted", params)
    np.testing.assert_allclose(params, [p, q, v], rtol=0.15)


def test_expected_orders_match_the_published_example() -> None:
    # Fader, Hardie & Lee (2005), section 5: x = 2, t_x = 30.43, T = 38.86 weeks -> 1.226
    # expected orders in the next 39 weeks.
    value = bgnbd_expected_orders(CDNOW, 39.0, [2.0], [30.43], [38.86])
    assert value[0] == pytest.approx(1.226, abs=0.002)


def test_expected_orders_equal_the_papers_formula() -> None:
    r, alpha, a, b = CDNOW
    x = np.array([0.0, 1.0, 3.0, 10.0, 25.0])
    t_x = np.array([0.0, 5.0, 20.0, 30.0, 38.0])
    T = np.full(5, 39.0)
    t = 52.0
    direct = (
        (a + b + x - 1)
        / (a - 1)
        * (
            1
            - hyp2f1(r + x, b + x, a + b + x - 1, t / (alpha + T + t))
            * ((alpha + T) / (alpha + T + t)) ** (r + x)
        )
        / (1 + (x > 0) * a / (b + x - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x))
    )
    np.testing.assert_allclose(bgnbd_expected_orders(CDNOW, t, x, t_x, T), direct, rtol=1e-9)


# A fit of a shop whose customers hardly drop out (generate_shop, seed 11): a and b in the
# thousands, where Euler's transform of the paper's 2F1 overflows to inf.
LARGE_AB = np.array([0.7256, 41.76, 5253.0, 41447.0])


def _reference_expected_orders(
    params: NDArray[np.float64], t: float, x: float, t_x: float, T: float
) -> float:
    """The paper's eq. 10 term by term in 60-digit arithmetic (mpmath), or a float64 series."""
    r, alpha, a, b = (float(v) for v in params)
    try:
        import mpmath as mp
    except ImportError:  # mpmath comes with sympy; without it, the paper's series in float64
        z = t / (alpha + T + t)
        n = np.arange(200_000, dtype=np.float64)
        steps = np.log(r + x + n) + np.log(b + x + n) - np.log(a + b + x - 1 + n)
        logs = np.concatenate([[0.0], np.cumsum(steps - np.log1p(n) + np.log(z))])
        hyp = float(np.exp(np.logaddexp.reduce(logs) + (r + x) * np.log1p(-z)))
        ratio = a / (b + x - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x) if x > 0 else 0.0
        return (a + b + x - 1) / (a - 1) * (1 - hyp) / (1 + ratio)
    with mp.workdps(60):
        r_, alpha_, a_, b_, x_, t_x_, T_ = (mp.mpf(v) for v in (r, alpha, a, b, x, t_x, T))
        z = t / (alpha_ + T_ + t)
        hyp = mp.hyp2f1(r_ + x_, b_ + x_, a_ + b_ + x_ - 1, z, maxterms=10**7)
        hyp *= ((alpha_ + T_) / (alpha_ + T_ + t)) ** (r_ + x_)
        ratio = a_ / (b_ + x_ - 1) * ((alpha_ + T_) / (alpha_ + t_x_)) ** (r_ + x_) if x else 0
        return float((a_ + b_ + x_ - 1) / (a_ - 1) * (1 - hyp) / (1 + ratio))


@pytest.mark.parametrize("params", [LARGE_AB, CDNOW, np.array([2.0, 0.01, 3e4, 1e5])])
def test_expected_orders_are_finite_and_exact_for_any_parameters(
    params: NDArray[np.float64],
) -> None:
    x = np.array([0.0, 1.0, 3.0, 20.0, 200.0, 1000.0, 1000.0])
    t_x = np.array([0.0, 10.0, 200.0, 280.0, 299.0, 1.0, 299.0])
    T = np.array([5.0, 300.0, 300.0, 300.0, 300.0, 1.0, 300.0])
    got = bgnbd_expected_orders(params, 90.0, x, t_x, T)
    assert np.isfinite(got).all() and (got >= 0).all()
    want = [_reference_expected_orders(params, 90.0, *c) for c in zip(x, t_x, T, strict=True)]
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-250)


def test_the_likelihood_is_finite_for_heavy_buyers() -> None:
    x = np.array([0.0, 500.0, 5000.0])
    t_x = np.array([0.0, 360.0, 364.0])
    T = np.full(3, 365.0)
    ll = bgnbd_log_likelihood(CDNOW, x, t_x, T)
    assert np.isfinite(ll).all()
    assert np.isfinite(bgnbd_expected_orders(CDNOW, 90.0, x, t_x, T)).all()
    alive = bgnbd_p_alive(CDNOW, x, t_x, T)
    assert alive[0] == 1.0 and 0.0 < alive[1] <= 1.0


def test_p_alive_falls_with_time_since_the_last_order() -> None:
    x = np.full(3, 4.0)
    t_x = np.array([50.0, 30.0, 5.0])
    alive = bgnbd_p_alive(CDNOW, x, t_x, np.full(3, 52.0))
    assert alive[0] > alive[1] > alive[2]


def test_gamma_gamma_shrinks_towards_the_population_mean() -> None:
    p, q, v = 6.25, 3.74, 15.44
    population = p * v / (q - 1)
    few, many = gamma_gamma_expected_value((p, q, v), [1.0, 50.0], [100.0, 100.0])
    assert population < few < many < 100.0
    assert gamma_gamma_expected_value((p, q, v), [0.0], [np.nan])[0] == pytest.approx(population)


def test_churn_risk_edges() -> None:
    groups = churn_risk(np.array([0.0, 0.299, 0.3, 0.69, 0.7, 1.0, np.nan]))
    assert groups.tolist() == ["high", "high", "medium", "medium", "low", "low", ""]


def _inputs(
    x: NDArray[np.float64], t_x: NDArray[np.float64], T: NDArray[np.float64]
) -> ValueInputs:
    m = np.where(x > 0, 20.0 + x, np.nan)
    return ValueInputs(bought=np.ones(x.shape[0], dtype=bool), x=x, t_x=t_x, T=T, m=m)


def test_the_gate_keeps_predictions_unpublished_with_a_reason() -> None:
    few = _inputs(np.array([0.0, 1.0, 2.0]), np.array([0.0, 10.0, 40.0]), np.full(3, 400.0))
    model = CustomerValue().fit(few)
    assert model.bgnbd_params_ is None
    prediction = model.predict(few)
    assert np.isnan(prediction.p_alive).all()
    assert "2 customers with a repeat order" in str(prediction.reason[0])
    rng = np.random.default_rng(3)
    x, t_x, T = simulate_bgnbd(rng, 2_000, np.array([0.5, 8.0, 0.8, 2.5]), T_max=60.0)
    short = CustomerValue().fit(_inputs(x, t_x, T))
    assert short.unpublished_ is not None and "history" in short.unpublished_


def test_published_predictions_and_state_round_trip() -> None:
    rng = np.random.default_rng(5)
    x, t_x, T = simulate_bgnbd(rng, 3_000, np.array([0.5, 8.0, 0.8, 2.5]), T_max=365.0)
    inputs = _inputs(x, t_x, T)
    model = CustomerValue().fit(inputs)
    assert model.unpublished_ is None and model.spend_unpublished_ is None
    prediction = model.predict(inputs)
    assert np.isfinite(prediction.expected_spend).all()
    again = CustomerValue.from_meta(model.to_meta()).predict(inputs)
    np.testing.assert_array_equal(again.expected_orders, prediction.expected_orders)
    old = CustomerValue.from_meta(None).predict(inputs)
    assert np.isnan(old.p_alive).all() and "retrain" in str(old.reason[0])


def test_holdout_forecast_of_a_stationary_process_is_unbiased() -> None:
    # Customers born at end - T; the last 90 days hold orders the calibration fit never saw.
    rng = np.random.default_rng(9)
    n, day, end = 6_000, 86400.0, 1.7e9
    who, when, T = simulate_orders(rng, n, np.array([0.6, 10.0, 0.7, 2.5]), T_max=500.0)
    users = np.concatenate([np.arange(n), who])
    at = end - np.concatenate([T, T[who] - when]) * day
    report = value_holdout(
        user_ids=users.astype(str),
        event_types=np.full(users.shape[0], "purchase"),
        values=np.full(users.shape[0], 10.0),
        occurred_at=at,
        order_ids=np.arange(users.shape[0]).astype(str),
    )
    print(
        "holdout",
        report["mae"],
        report["baseline_mae"],
        report["mean_predicted"],
        report["mean_actual"],
    )
    assert report["measured"] and report["customers"] == n
    assert report["mean_predicted"] == pytest.approx(report["mean_actual"], rel=0.1)
    assert report["mae"] < report["baseline_mae"]
    heavy = report["by_frequency"]["8+"]
    assert heavy["mean_predicted"] == pytest.approx(heavy["mean_actual"], rel=0.2)
