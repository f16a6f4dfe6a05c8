"""The Universal Scalability Law fitted to a closed sweep: X(N) = λN / (1 + σ(N−1) + κN(N−1)).

σ is contention (the share of the work that queues for one resource), κ coherency (the
cost of keeping N requests consistent, which makes throughput fall past its peak at
N* = √((1−σ)/κ)). The fit is least squares on N/X = a + b(N−1) + cN(N−1), which is
linear in a = 1/λ, b = σ/λ, c = κ/λ; σ and κ are kept non-negative.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class UslFit:
    lam: float  # throughput of one user with no contention (requests/s)
    sigma: float
    kappa: float
    r2: float  # of the throughputs the fit predicts against the measured ones
    points: int

    @property
    def peak_concurrency(self) -> float | None:
        """N*, where throughput peaks (None: it only flattens, κ = 0)."""
        if self.kappa <= 0:
            return None
        return math.sqrt(max(1 - self.sigma, 0.0) / self.kappa)

    def throughput(self, n: float) -> float:
        return self.lam * n / (1 + self.sigma * (n - 1) + self.kappa * n * (n - 1))

    @property
    def peak_throughput(self) -> float:
        n = self.peak_concurrency
        if n is None:
            return self.lam / self.sigma if self.sigma > 0 else math.inf
        return self.throughput(n)

    @property
    def quality(self) -> str:
        if self.points < 4:
            return "rough (few stages)"
        if self.r2 >= 0.98:
            return "good"
        if self.r2 >= 0.9:
            return "fair"
        return "poor"

    def to_dict(self) -> dict[str, float | int | str | None]:
        peak = self.peak_throughput
        return {
            "lambda": self.lam,
            "sigma": self.sigma,
            "kappa": self.kappa,
            "r2": self.r2,
            "points": self.points,
            "peak_concurrency": self.peak_concurrency,
            "peak_throughput": None if math.isinf(peak) else peak,
            "quality": self.quality,
        }


def _solve(rows: list[list[float]], rhs: list[float]) -> list[float] | None:
    """Least squares via the normal equations (at most 3 unknowns), Gauss–Jordan."""
    k = len(rows[0])
    a = [[sum(r[i] * r[j] for r in rows) for j in range(k)] for i in range(k)]
    b = [sum(r[i] * y for r, y in zip(rows, rhs, strict=True)) for i in range(k)]
    for col in range(k):
        pivot = max(range(col, k), key=lambda r: abs(a[r][col]))
        if abs(a[pivot][col]) < 1e-15:
            return None
        a[col], a[pivot] = a[pivot], a[col]
        b[col], b[pivot] = b[pivot], b[col]
        for r in range(k):
            if r != col:
                f = a[r][col] / a[col][col]
                a[r] = [x - f * y for x, y in zip(a[r], a[col], strict=True)]
                b[r] -= f * b[col]
    return [b[i] / a[i][i] for i in range(k)]


def fit(points: list[tuple[float, float]]) -> UslFit | None:
    """Fit (concurrency, throughput) pairs; None with fewer than 3 usable points.

    With a stage of one user, λ is its measured throughput (as the USL's own normalisation
    does) and only σ and κ are fitted: a sweep that collapses (a server that stops using
    some of its workers) then reads as a poor fit instead of an absurd λ.
    """
    pts = [(n, x) for n, x in points if n >= 1 and x > 0]
    if len(pts) < 3:
        return None
    single = [x for n, x in pts if n == 1]
    if single:
        return _fit_with_lambda(pts, single[0])
    y = [n / x for n, x in pts]
    best: tuple[float, float, float] | None = None
    # Try the full model, then with κ = 0, then σ = 0: the first with non-negative terms.
    for use_sigma, use_kappa in ((True, True), (True, False), (False, True), (False, False)):
        rows = []
        for n, _ in pts:
            row = [1.0]
            if use_sigma:
                row.append(n - 1)
            if use_kappa:
                row.append(n * (n - 1))
            rows.append(row)
        solved = _solve(rows, y)
        if solved is None or solved[0] <= 0 or any(v < 0 for v in solved[1:]):
            continue
        a = solved[0]
        rest = iter(solved[1:])
        b = next(rest) if use_sigma else 0.0
        c = next(rest) if use_kappa else 0.0
        best = (a, b, c)
        break
    if best is None:
        return None
    a, b, c = best
    lam, sigma, kappa = 1 / a, b / a, c / a
    model = UslFit(lam, sigma, kappa, 0.0, len(pts))
    xs = [x for _, x in pts]
    mean = sum(xs) / len(xs)
    total = sum((x - mean) ** 2 for x in xs)
    resid = sum((x - model.throughput(n)) ** 2 for n, x in pts)
    r2 = 1 - resid / total if total > 0 else 1.0
    return UslFit(lam, sigma, kappa, r2, len(pts))


def _fit_with_lambda(pts: list[tuple[float, float]], lam: float) -> UslFit | None:
    """σ, κ ≥ 0 by least squares on λN/X − 1 = σ(N−1) + κN(N−1), λ given."""
    rest = [(n, x) for n, x in pts if n > 1]
    y = [lam * n / x - 1 for n, x in rest]
    best = (0.0, 0.0)
    for use_sigma, use_kappa in ((True, True), (True, False), (False, True)):
        rows = []
        for n, _ in rest:
            row = []
            if use_sigma:
                row.append(n - 1)
            if use_kappa:
                row.append(n * (n - 1))
            rows.append(row)
        solved = _solve(rows, y)
        if solved is None or any(v < 0 for v in solved):
            continue
        values = iter(solved)
        best = (next(values) if use_sigma else 0.0, next(values) if use_kappa else 0.0)
        break
    sigma, kappa = best
    model = UslFit(lam, sigma, kappa, 0.0, len(pts))
    xs = [x for _, x in pts]
    mean = sum(xs) / len(xs)
    total = sum((x - mean) ** 2 for x in xs)
    resid = sum((x - model.throughput(n)) ** 2 for n, x in pts)
    return UslFit(lam, sigma, kappa, 1 - resid / total if total > 0 else 1.0, len(pts))
