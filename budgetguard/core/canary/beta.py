"""The regularized incomplete beta function and the binomial density, in standard-library Python.

Every bound and test the canary judge uses reduces to a tail of the beta distribution; writing it here
keeps the core free of numpy and scipy. The continued fraction is Numerical Recipes §6.4's; its
prefactor comes from Loader's saddle-point binomial density, as R's ``dbinom``/``dhyper`` compute it,
which keeps full precision at a million events; the inverse is a safeguarded Newton.
``tests/test_canary.py`` checks them against scipy to 1e-9.

Pure arithmetic: no I/O, nothing about canaries.
"""

from __future__ import annotations

import math
from statistics import NormalDist

_LN_2PI = math.log(2.0 * math.pi)
_LN_SQRT_2PI = 0.5 * _LN_2PI
_CF_EPSILON = 1e-15
_CF_TINY = 1e-300
_CF_MAX_ITERATIONS = 1_000_000  # ~sqrt(max(a, b)) are needed; a few hundred at a million events
_NEWTON_MAX_ITERATIONS = 300


def _stirling_error(n: float) -> float:
    """log(n!) - log(sqrt(2 pi n) (n/e)^n), the error of Stirling's formula (Loader 2000)."""
    if n <= 15.0:
        return math.lgamma(n + 1.0) - (n + 0.5) * math.log(n) + n - _LN_SQRT_2PI
    s0, s1, s2, s3, s4 = 1 / 12, 1 / 360, 1 / 1260, 1 / 1680, 1 / 1188
    nn = n * n
    if n > 500:
        return (s0 - s1 / nn) / n
    if n > 80:
        return (s0 - (s1 - s2 / nn) / nn) / n
    if n > 35:
        return (s0 - (s1 - (s2 - s3 / nn) / nn) / nn) / n
    return (s0 - (s1 - (s2 - (s3 - s4 / nn) / nn) / nn) / nn) / n


def _deviance(x: float, mean: float) -> float:
    """x log(x / mean) + mean - x, without the cancellation when x is close to mean (Loader's bd0)."""
    if abs(x - mean) < 0.1 * (x + mean):
        v = (x - mean) / (x + mean)
        total = (x - mean) * v
        term = 2.0 * x * v
        v *= v
        for j in range(1, 1000):
            term *= v
            updated = total + term / (2 * j + 1)
            if updated == total:
                return updated
            total = updated
        return total
    return x * math.log(x / mean) + mean - x


def log_binomial_density(x: float, n: float, p: float, q: float) -> float:
    """log of C(n, x) p^x q^(n-x) for real 0 <= x <= n and q = 1 - p (Loader's dbinom_raw)."""
    if p == 0.0:
        return 0.0 if x == 0 else -math.inf
    if q == 0.0:
        return 0.0 if x == n else -math.inf
    if x == 0:
        if n == 0:
            return 0.0
        return -_deviance(n, n * q) - n * p if p < 0.1 else n * math.log(q)
    if x == n:
        return -_deviance(n, n * p) - n * q if q < 0.1 else n * math.log(p)
    if x < 0 or x > n:
        return -math.inf
    log_c = (
        _stirling_error(n)
        - _stirling_error(x)
        - _stirling_error(n - x)
        - _deviance(x, n * p)
        - _deviance(n - x, n * q)
    )
    return log_c - 0.5 * (_LN_2PI + math.log(x) + math.log1p(-x / n))


def _log_beta_prefactor(a: float, b: float, x: float) -> float:
    """log(x^a (1-x)^b / B(a, b)); equals the binomial density of a in a + b trials times ab/(a+b).

    Loader's form keeps full precision when a and b are large; it needs the expected counts (a+b)x and
    (a+b)(1-x) to be normal floats, so far out in a tail the plain log-gamma form takes over.
    """
    n = a + b
    if min(x, 1.0 - x) * n < 1e-300:
        return a * math.log(x) + b * math.log1p(-x) - _log_beta(a, b)
    return log_binomial_density(a, n, x, 1.0 - x) + math.log(a) + math.log(b) - math.log(n)


def _lgamma_correction(x: float) -> float:
    """lgamma(x) - ((x - 1/2) log x - x + log sqrt(2 pi)) for x >= 10, from Stirling's series."""
    inverse = 1.0 / x
    square = inverse * inverse
    terms = (1 / 12, -1 / 360, 1 / 1260, -1 / 1680, 1 / 1188, -691 / 360360, 1 / 156)
    total = 0.0
    for coefficient in reversed(terms):
        total = total * square + coefficient
    return total * inverse


def _log_beta(a: float, b: float) -> float:
    """log B(a, b) without the cancellation of lgamma(a) + lgamma(b) - lgamma(a + b) (R's lbeta)."""
    p, q = min(a, b), max(a, b)
    if p >= 10:
        correction = _lgamma_correction(p) + _lgamma_correction(q) - _lgamma_correction(p + q)
        return (
            -0.5 * math.log(q)
            + _LN_SQRT_2PI
            + correction
            + (p - 0.5) * math.log(p / (p + q))
            + q * math.log1p(-p / (p + q))
        )
    if q >= 10:
        correction = _lgamma_correction(q) - _lgamma_correction(p + q)
        return math.lgamma(p) + correction + p - p * math.log(p + q) + (q - 0.5) * math.log1p(-p / (p + q))
    return math.lgamma(p) + math.lgamma(q) - math.lgamma(p + q)


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of I_x(a, b) by the modified Lentz method (Numerical Recipes §6.4)."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) >= _CF_TINY else _CF_TINY)
    h = d
    for m in range(1, _CF_MAX_ITERATIONS + 1):
        m2 = 2 * m
        for numerator in (
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) >= _CF_TINY else _CF_TINY)
            c = 1.0 + numerator / c
            c = c if abs(c) >= _CF_TINY else _CF_TINY
            step = d * c
            h *= step
        if abs(step - 1.0) < _CF_EPSILON:
            return h
    raise ArithmeticError(f"the incomplete beta continued fraction did not converge for a={a}, b={b}, x={x}")


def beta_tails(a: float, b: float, x: float) -> tuple[float, float]:
    """(I_x(a, b), 1 - I_x(a, b)), each computed directly where it is the small one."""
    if x <= 0.0:
        return 0.0, 1.0
    if x >= 1.0:
        return 1.0, 0.0
    prefactor = math.exp(_log_beta_prefactor(a, b, x))
    if x < (a + 1.0) / (a + b + 2.0):
        lower = prefactor * _beta_continued_fraction(a, b, x) / a
        return lower, 1.0 - lower
    upper = prefactor * _beta_continued_fraction(b, a, 1.0 - x) / b
    return 1.0 - upper, upper


def _check_shape(a: float, b: float) -> None:
    if not (a > 0 and b > 0 and math.isfinite(a) and math.isfinite(b)):
        raise ValueError(f"the beta shape parameters must be positive and finite, got a={a}, b={b}")


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b), the CDF of Beta(a, b) at x."""
    _check_shape(a, b)
    return beta_tails(a, b, x)[0]


def beta_quantile(a: float, b: float, tail: float, upper: bool) -> float:
    """The x where the lower tail I_x(a, b) (or, with ``upper``, 1 - I_x) equals ``tail``.

    Safeguarded Newton (Numerical Recipes' rtsafe) on the tail that is being matched, so a tail of 1e-12
    keeps its precision; the step falls back to bisection whenever Newton would leave the bracket.
    """
    if tail <= 0.0:
        return 1.0 if upper else 0.0
    if tail >= 1.0:
        return 0.0 if upper else 1.0
    lo, hi = 0.0, 1.0
    # Start from the normal approximation to Beta(a, b), which Newton polishes in a few steps.
    mean = a / (a + b)
    sd = math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1.0)))
    z = NormalDist().inv_cdf(tail)
    x = mean - z * sd if upper else mean + z * sd
    if not 0.0 < x < 1.0:
        x = mean
    for _ in range(_NEWTON_MAX_ITERATIONS):
        below, above = beta_tails(a, b, x)
        # g(x) increases with x in both cases: the lower tail grows, the upper tail shrinks.
        g = below - tail if not upper else tail - above
        if g == 0.0:
            return x
        if g < 0.0:
            lo = x
        else:
            hi = x
        density = math.exp(_log_beta_prefactor(a, b, x)) / (x * (1.0 - x))
        step = g / density if density > 0.0 else math.inf
        candidate = x - step
        if not lo < candidate < hi:
            candidate = 0.5 * (lo + hi)
        if abs(candidate - x) <= 4e-16 * x or hi - lo <= 4e-16 * hi:
            return candidate
        x = candidate
    return x


def betaincinv(a: float, b: float, q: float) -> float:
    """The inverse of ``betainc`` in x: the q-quantile of Beta(a, b)."""
    _check_shape(a, b)
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q must be a probability, got {q}")
    if q <= 0.5:
        return beta_quantile(a, b, q, upper=False)
    return beta_quantile(a, b, 1.0 - q, upper=True)
