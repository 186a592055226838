"""The wrapped normal distribution on the unit torus (paper Eq. A5) and its score.

q_sigma(x) = sum_k N(x + k; 0, sigma^2), k in {-n..n} (x reduced to [-1/2, 1/2) first, so the
truncated sum is accurate for sigma up to ~1 with the default n = 5). Everything is per
coordinate; the 3-D density of fractional coordinates is a product over axes.

The score d/dx log q is what the coordinate denoiser learns (A9), weighted by
lambda_t = 1 / E_{x ~ q}[(d/dx log q(x))^2] (one coordinate).

>>> import torch
>>> s = wrapped_normal_score(torch.tensor([0.01]), torch.tensor([0.01]))
>>> round(float(s), 2)  # a narrow wrapped normal is a Gaussian: score -x / sigma^2
-100.0
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
from pathlib import Path

import numpy as np
import torch

from dosmatgen.io import atomic_temp_path

DEFAULT_IMAGES: int = 5


def _reduce(x: torch.Tensor) -> torch.Tensor:
    """Map x to [-1/2, 1/2) (derivative 1 almost everywhere)."""
    return x - torch.floor(x + 0.5)


def _image_offsets(x: torch.Tensor, n_images: int) -> torch.Tensor:
    return torch.arange(-n_images, n_images + 1, dtype=x.dtype, device=x.device)


def wrapped_normal_log_prob(x: torch.Tensor, sigma: torch.Tensor | float,
                            n_images: int = DEFAULT_IMAGES) -> torch.Tensor:
    """log q_sigma(x) of a zero-centred wrapped normal on [0, 1) (A5), elementwise.

    ``sigma`` broadcasts against ``x``.
    """
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    d = _reduce(x).unsqueeze(-1) + _image_offsets(x, n_images)  # (..., 2n+1)
    s = sigma.unsqueeze(-1)
    log_terms = -0.5 * (d / s) ** 2
    return torch.logsumexp(log_terms, dim=-1) - torch.log(sigma) - 0.5 * math.log(2 * math.pi)


def wrapped_normal_score(x: torch.Tensor, sigma: torch.Tensor | float,
                         n_images: int = DEFAULT_IMAGES) -> torch.Tensor:
    """d/dx log q_sigma(x), elementwise (the target of Eq. A9 with x = X_t - X_0).

    Computed as -sum_k w_k (x + k) / sigma^2 with softmax weights w_k, which is exactly the
    derivative of :func:`wrapped_normal_log_prob` with the same ``n_images``.
    """
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    d = _reduce(x).unsqueeze(-1) + _image_offsets(x, n_images)
    s2 = (sigma ** 2).unsqueeze(-1)
    w = torch.softmax(-0.5 * d ** 2 / s2, dim=-1)
    return -(w * d).sum(-1) / s2.squeeze(-1)


def estimate_score_norm(sigmas: torch.Tensor, n_samples: int = 5000, seed: int = 0,
                        n_images: int = DEFAULT_IMAGES, chunk: int = 32) -> torch.Tensor:
    """Monte-Carlo estimate of E_{x ~ q_sigma}[(d/dx log q_sigma(x))^2] for each sigma.

    lambda_t of Eq. A9 is its inverse. Samples x = sigma * z with z standard normal, drawn once
    with a fixed ``seed`` by stratified sampling (one draw per equal-probability stratum: unbiased,
    with far less variance than plain draws) and shared by every sigma, so the estimate is a
    smooth function of sigma;
    float64, chunked over sigmas to bound memory, with only as many images as each sigma needs
    (:func:`images_needed`; the dropped terms are below exp(-40)).
    """
    sigmas = torch.as_tensor(sigmas, dtype=torch.float64).reshape(-1)
    gen = torch.Generator().manual_seed(int(seed))
    # stratified: one uniform draw inside each of n equal-probability strata of N(0, 1)
    u = (torch.arange(n_samples, dtype=torch.float64) + torch.rand(n_samples, generator=gen, dtype=torch.float64))
    u = (u / n_samples).clamp(1e-12, 1 - 1e-12)
    z = math.sqrt(2.0) * torch.erfinv(2 * u - 1)
    out = torch.empty_like(sigmas)
    order = torch.argsort(sigmas)
    for start in range(0, sigmas.numel(), chunk):
        idx = order[start:start + chunk]
        s = sigmas[idx, None]
        score = wrapped_normal_score(s * z[None, :], s, images_needed(float(s.max()), n_images))
        out[idx] = (score ** 2).mean(dim=1)
    return out


def images_needed(sigma: float, n_images: int = DEFAULT_IMAGES) -> int:
    """Fewest images (<= ``n_images``) whose neglected terms are below exp(-40) relative to the
    largest one (|x| <= 1/2 after reduction): narrow distributions need only k = -1..1."""
    need = int(math.ceil(math.sqrt(80.0) * sigma - 0.5))
    return max(1, min(n_images, need))


def score_norm_quadrature(sigmas: torch.Tensor, n_grid: int = 20001,
                          n_images: int = DEFAULT_IMAGES) -> torch.Tensor:
    """The same expectation by the trapezoid rule on [-1/2, 1/2] (a check on the Monte Carlo).

    Accurate for sigma >~ 10 / n_grid.
    """
    sigmas = torch.as_tensor(sigmas, dtype=torch.float64).reshape(-1)
    x = torch.linspace(-0.5, 0.5, n_grid, dtype=torch.float64)
    out = torch.empty_like(sigmas)
    for i, s in enumerate(sigmas):
        dens = torch.exp(wrapped_normal_log_prob(x, s, n_images))
        score = wrapped_normal_score(x, s, n_images)
        out[i] = torch.trapezoid(dens * score ** 2, x)
    return out


def score_norm_cache_dir() -> Path:
    """Folder of the on-disk lambda_t cache: ``$DOSMATGEN_CACHE`` or ``~/.cache/dosmatgen``."""
    return Path(os.environ.get("DOSMATGEN_CACHE", Path.home() / ".cache" / "dosmatgen"))


@functools.lru_cache(maxsize=16)
def _cached_score_norm(sigmas_key: tuple[float, ...], n_samples: int, seed: int,
                       n_images: int) -> np.ndarray:
    """The estimate is deterministic in its arguments, so it is also cached on disk (keyed by a
    hash of them): every model load after the first skips the ~20 s Monte Carlo."""
    digest = hashlib.sha256(repr((sigmas_key, n_samples, seed, n_images)).encode()).hexdigest()[:16]
    path = score_norm_cache_dir() / f"score_norm-{digest}.npy"
    try:
        cached = np.load(path)
        if cached.shape == (len(sigmas_key),) and np.all(np.isfinite(cached)):
            return cached
    except (OSError, ValueError):
        pass
    value = estimate_score_norm(torch.tensor(sigmas_key, dtype=torch.float64), n_samples, seed,
                                n_images).numpy()
    try:
        with atomic_temp_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, value)
    except OSError:  # a read-only home is no reason to fail
        pass
    return value


def cached_score_norm(sigmas: torch.Tensor, n_samples: int, seed: int,
                      n_images: int = DEFAULT_IMAGES) -> torch.Tensor:
    """:func:`estimate_score_norm`, memoised per (sigmas, samples, seed, images) in this process."""
    key = tuple(float(s) for s in torch.as_tensor(sigmas, dtype=torch.float64).reshape(-1))
    return torch.from_numpy(_cached_score_norm(key, int(n_samples), int(seed), int(n_images)).copy())
