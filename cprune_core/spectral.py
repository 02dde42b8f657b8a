"""Data-free spectral figures of a layer, from its weights alone (WeightWatcher's, beside centrality's).

Conventions, WeightWatcher 0.7's defaults (checked in its source):

- A layer's matrices: a Linear layer's weight (out x in); a Conv2d layer (out x in x kh x kw) is kh*kw matrices,
  one per kernel position (out x in each), whose eigenvalues are pooled into one ESD (WeightWatcher's
  ``pool=True``); a 1x1 convolution is one matrix.
- The empirical spectral density (ESD): the eigenvalues of each matrix's W^T W (its smaller Gram), i.e. its
  squared singular values, not normalised (WeightWatcher's ``normalize=False``; dividing by N would move xmin
  and the norms, never alpha or the stable rank).
- alpha: the ESD's power-law tail exponent (``powerlaw_fit``: Clauset-Shalizi-Newman, xmin by KS distance);
  alpha_mid: the same with xmin at the median eigenvalue (AlphaPruning's metric for image classifiers).
- stable rank: ||W||_F^2 / ||W||_2^2 = sum(eigenvalues) / max(eigenvalue) (over the pooled matrices, as
  WeightWatcher's); spectral norm: ||W||_2, the largest singular value (WeightWatcher's ``spectral_norm`` column
  is its square).
- The shuffled baseline: the same layer with its entries permuted (seeded, ``SHUFFLE_SEED``), which keeps their
  distribution and destroys every structure training put there; its alpha is what a layer of such entries has
  by chance (a Marchenko-Pastur bulk: a large alpha, a poor fit).

How singular values are computed (``singular_values``), by the cost of the layer's matrices, n*m^2 summed over
them (n >= m their sides): up to EXACT_COST, LAPACK's SVD in float64 (every EfficientNet-Lite layer: Lite2's
largest is 1.7e8); above it and up to GRAM_SIDE on the short side, the eigenvalues of the smaller Gram matrix in
float64 (2-6x faster; a singular value's error is about sqrt(m eps) times the largest, so smaller ones count as 0);
above that, the TOP_K largest by Lanczos (scipy's ``svds``, ARPACK): the ESD is then its top, the tail fitted
within it, and the Frobenius norm (so the stable rank) still exact.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.sparse.linalg import svds

from .errors import ConfigError, NonFiniteWeightsError
from .model_source import ModelSource
from .powerlaw_fit import PowerLawFit, fit_power_law

__all__ = ["EXACT_COST", "GRAM_SIDE", "TOP_K", "SHUFFLE_SEED", "Spectrum", "LayerSpectrum", "layer_matrices",
           "singular_values", "spectrum", "shuffled", "weight_spectrum", "layer_spectrum", "SPECTRAL_COLUMNS",
           "spectral_row", "alpha_sentence"]

EXACT_COST = 2**30  # n*m^2 summed over a layer's matrices: about a second of float64 SVD on one core
GRAM_SIDE = 8192  # the largest short side whose Gram matrix is formed (8192^2 float64: 512 MiB)
TOP_K = 256  # singular values per matrix by Lanczos beyond that
SHUFFLE_SEED = 0
_EPS = np.finfo(np.float64).eps


@dataclass(frozen=True)
class Spectrum:
    """The singular values of a layer's matrices, pooled, and how they were computed."""

    singular_values: np.ndarray  # descending, every matrix's together (float64)
    method: str  # "svd", "gram" or "top-k"
    matrices: int  # kh*kw for a convolution, else 1
    shape: tuple[int, int]  # each matrix's (rows, columns)
    frobenius: float  # ||W||_F over every matrix: exact whatever the method
    tolerance: float  # singular values at or below it count as 0 (numerical rank, at the stored precision)

    @property
    def eigenvalues(self) -> np.ndarray:
        """The ESD: squared singular values, ascending (zeros included)."""
        return np.sort(self.singular_values**2)

    @property
    def nonzero_eigenvalues(self) -> np.ndarray:
        """The eigenvalues above the numerical rank's tolerance, ascending: what the power law is fitted to."""
        values = self.singular_values[self.singular_values > self.tolerance]
        return np.sort(values**2)

    @property
    def rank(self) -> int:
        """Singular values above ``tolerance`` (of every matrix together)."""
        return int((self.singular_values > self.tolerance).sum())

    @property
    def spectral_norm(self) -> float:
        """The largest singular value (0 for a zero layer)."""
        return float(self.singular_values[0]) if len(self.singular_values) else 0.0

    @property
    def stable_rank(self) -> float:
        """||W||_F^2 / ||W||_2^2; NaN for a zero layer."""
        norm = self.spectral_norm
        return self.frobenius**2 / norm**2 if norm > 0 else math.nan

    def fit(self, xmin: str = "ks") -> PowerLawFit:
        """The power-law fit of the ESD's tail (``fit_power_law``) on ``nonzero_eigenvalues``."""
        return fit_power_law(self.nonzero_eigenvalues, xmin=xmin)


def layer_matrices(weight: torch.Tensor | np.ndarray) -> np.ndarray:
    """A layer's weights (neurons first: out x in, or out x in x kh x kw) as its stack of matrices (matrices x
    out x in, float64): one for a Linear layer, one per kernel position for a convolution. ConfigError for
    another rank; NonFiniteWeightsError for NaN or Inf."""
    values = weight.detach().cpu().double().numpy() if isinstance(weight, torch.Tensor) else np.asarray(weight, float)
    if values.ndim not in (2, 4):
        raise ConfigError(f"A layer's weights have rank 2 (Linear) or 4 (Conv2d); got shape {values.shape}.")
    if not np.isfinite(values).all():
        raise NonFiniteWeightsError("The layer has NaN or Inf weights: its spectrum is undefined.")
    if values.ndim == 2:
        return values[None]
    out, inputs = values.shape[:2]
    return np.ascontiguousarray(values.reshape(out, inputs, -1).transpose(2, 0, 1))


def singular_values(matrices: np.ndarray, eps: float = _EPS) -> tuple[np.ndarray, str, float]:
    """(singular values of every matrix of the stack, descending; the method; the rank tolerance), by the
    rule of the module docstring. ``eps``: the machine epsilon of the weights as stored (float32's for a
    model's): a singular value below max(n, m) eps times the largest is rounding, not rank (numpy's
    ``matrix_rank`` rule), and below sqrt(m eps64) times it the Gram method cannot tell it from 0."""
    count, rows, columns = matrices.shape
    long, short = max(rows, columns), min(rows, columns)
    relative = long * max(eps, _EPS)
    if count * long * short * short <= EXACT_COST:
        values, method = np.linalg.svd(matrices, compute_uv=False).ravel(), "svd"
    elif short <= GRAM_SIDE:
        grams = matrices.transpose(0, 2, 1) @ matrices if rows >= columns else matrices @ matrices.transpose(0, 2, 1)
        values, method = np.sqrt(np.clip(np.linalg.eigvalsh(grams), 0, None)).ravel(), "gram"
        relative = max(relative, math.sqrt(short * _EPS))
    else:
        k = min(TOP_K, short - 1)
        values = np.concatenate([svds(matrix, k=k, return_singular_vectors=False, random_state=0)
                                 for matrix in matrices])
        method = "top-k"
    values = np.sort(values)[::-1]
    return values, method, float(values[0] * relative) if len(values) else 0.0


def _epsilon(weight: torch.Tensor | np.ndarray) -> float:
    """The machine epsilon of the weights' stored precision (float64's for anything not a float)."""
    if isinstance(weight, torch.Tensor):
        return torch.finfo(weight.dtype).eps if weight.dtype.is_floating_point else _EPS
    dtype = np.asarray(weight).dtype
    return float(np.finfo(dtype).eps) if np.issubdtype(dtype, np.floating) else _EPS


def spectrum(weight: torch.Tensor | np.ndarray) -> Spectrum:
    """The ``Spectrum`` of a layer's weights (neurons first). Errors: ``layer_matrices``'s.

    Example: a 32 x 3 x 3 x 3 convolution is 9 matrices of 32 x 3, 27 singular values."""
    matrices = layer_matrices(weight)
    values, method, tolerance = singular_values(matrices, _epsilon(weight))
    return Spectrum(values, method, len(matrices), tuple(matrices.shape[1:]), float(np.linalg.norm(matrices)),
                    tolerance)


def shuffled(weight: torch.Tensor | np.ndarray, seed: int = SHUFFLE_SEED) -> np.ndarray:
    """The layer's weights with their entries permuted at random (seeded): the same values, the same shape, no
    structure."""
    values = weight.detach().cpu().numpy() if isinstance(weight, torch.Tensor) else np.asarray(weight)
    return np.random.default_rng(seed).permutation(values.ravel()).reshape(values.shape)


@dataclass(frozen=True)
class LayerSpectrum:
    """A layer's spectral figures: the trained weights' spectrum and fits, and the shuffled baseline's."""

    layer: str
    spectrum: Spectrum
    fit: PowerLawFit  # xmin by KS distance: WeightWatcher's alpha
    fit_mid: PowerLawFit  # xmin at the median: AlphaPruning's alpha_mid
    shuffled: Spectrum
    shuffled_fit: PowerLawFit

    @property
    def note(self) -> str:
        """Why a figure is missing or approximate ("" when none is)."""
        notes = []
        if self.spectrum.spectral_norm == 0:
            notes.append("zero layer: every weight is 0")
        elif not self.fit.fitted:
            notes.append(self.fit.note)
        if self.spectrum.method == "top-k":
            notes.append(f"ESD: the top {TOP_K} singular values of each matrix (Lanczos), not all")
        return "; ".join(notes)


def weight_spectrum(weight: torch.Tensor | np.ndarray, layer: str = "layer", seed: int = SHUFFLE_SEED) -> LayerSpectrum:
    """Every spectral figure of one layer's weights (neurons first), and of the same weights shuffled with ``seed``.

    Parameters
    ----------
    weight : out x in (Linear) or out x in x kh x kw (Conv2d).
    layer : its name, for the result and messages.
    seed : the shuffle's.

    Returns
    -------
    LayerSpectrum. A zero layer: spectral norm 0, stable rank and every alpha NaN, a note. A layer of rank below
    ``powerlaw_fit.MIN_TAIL`` (a 3 x 2 matrix, a 3x3 depthwise filter bank's 9 values): no fit (NaN alpha, the
    note says why), the norms still given.

    Raises
    ------
    ConfigError : weights of rank other than 2 or 4. NonFiniteWeightsError : NaN or Inf weights.

    Example: ``weight_spectrum(torch.randn(512, 256)).fit.alpha`` is large (a random matrix has no heavy tail).
    """
    try:
        trained = spectrum(weight)
        baseline = spectrum(shuffled(weight, seed))
    except NonFiniteWeightsError:
        raise NonFiniteWeightsError(f"Layer {layer} has NaN or Inf weights: its spectrum is undefined. Load a "
                                    "healthy checkpoint or re-initialise the layer.") from None
    return LayerSpectrum(layer, trained, trained.fit("ks"), trained.fit("median"), baseline, baseline.fit("ks"))


def layer_spectrum(source: ModelSource, layer: str, seed: int = SHUFFLE_SEED) -> LayerSpectrum:
    """``weight_spectrum`` of ``layer`` of ``source`` (a backbone or a weights file). ConfigError for a layer the
    source lacks; NonFiniteWeightsError for NaN or Inf weights."""
    return weight_spectrum(source.weight(layer), layer, seed)


SPECTRAL_COLUMNS = ("alpha", "alpha_xmin", "alpha_ks", "alpha_tail", "alpha_vs_exponential", "alpha_vs_exponential_p",
                    "alpha_mid", "alpha_shuffled", "stable_rank", "spectral_norm", "eigenvalues", "spectral_method",
                    "spectral_note")


def spectral_row(figures: LayerSpectrum) -> dict:
    """The layer-wise table's spectral columns (SPECTRAL_COLUMNS) of one layer; NaN where a figure is undefined."""
    fit = figures.fit
    return {"alpha": fit.alpha, "alpha_xmin": fit.xmin, "alpha_ks": fit.ks, "alpha_tail": fit.tail,
            "alpha_vs_exponential": fit.vs_exponential, "alpha_vs_exponential_p": fit.vs_exponential_p,
            "alpha_mid": figures.fit_mid.alpha, "alpha_shuffled": figures.shuffled_fit.alpha,
            "stable_rank": figures.spectrum.stable_rank, "spectral_norm": figures.spectrum.spectral_norm,
            "eigenvalues": len(figures.spectrum.singular_values), "spectral_method": figures.spectrum.method,
            "spectral_note": figures.note}


def alpha_sentence(figures: LayerSpectrum) -> str:
    """One line for a layer's header: its alpha beside the shuffled baseline's, or why there is none."""
    fit, baseline = figures.fit, figures.shuffled_fit
    if not fit.fitted:
        return f"Spectral tail: none ({figures.note})."
    shuffled_text = f"{baseline.alpha:.2f}" if baseline.fitted else "no fit"
    return (f"Spectral tail alpha {fit.alpha:.2f} ± {fit.sigma:.2f} (xmin {fit.xmin:.3g}, {fit.tail} of "
            f"{len(figures.spectrum.singular_values)} eigenvalues, KS {fit.ks:.3f}); the same weights shuffled: "
            f"{shuffled_text} (smaller: a heavier tail).")
