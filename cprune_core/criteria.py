"""Importance criteria: one small class per criterion, one call signature.

``criterion(vectors)`` takes a layer's weight vectors (n neurons x d inputs, see
graph.weight_vectors) and returns one score per neuron; higher means keep. Graph criteria
build the tau-thresholded similarity graph themselves: the dense n x n matrix where it fits one block of
the graph budget (``blockwise.GraphBudget``), else a ``SparseGraph`` built a block at a time, and FPGM
sums its distances a block of rows at a time, so any layer's scores take bounded memory.
``GroupImportance`` plugs any of them into torch-pruning, so coupled layers (residual adds, depthwise
convs) are scored together.
"""
from __future__ import annotations

from dataclasses import replace

import torch
import torch_pruning as tp
from torch import nn

from .blockwise import GraphBudget, similarity_graph
from .centrality import Centrality, eigenvector_centrality, pagerank, weighted_degree
from .graph import adjacency_of
from .sparse_graph import SparseGraph
from .layers import has_neurons, is_depthwise, weight_vectors
from .ranges import DEFAULT_TAU, TAU, choose

__all__ = ["CRITERIA", "DEFAULT_TAU", "RANKING_MAX_ITER", "Criterion", "GraphCriterion", "GroupImportance",
           "make_criterion", "scores_for", "graph_of", "distance_sums"]

# torch-pruning's handlers that remove a layer's own neurons (not its inputs), as its own importances test them.
_OUT_CHANNEL_PRUNING = (tp.prune_conv_out_channels, tp.prune_linear_out_channels)
RANKING_MAX_ITER = 20_000  # power iteration steps a graph criterion may take before it settles for its last iterate


class Criterion:
    """A neuron importance criterion: ``criterion(vectors)`` scores each neuron of one layer.

    Parameters of the call
    ----------------------
    vectors : tensor, n x d
        The layer's weight vectors (``layers.weight_vectors``: one row per neuron), on any device.

    Returns
    -------
    A float tensor of n scores on the same device; higher means keep (``pruning.kept_indices`` keeps
    the highest, ties in a seeded random order: ``pruning.ranking``).

    Example: ``make_criterion("l1")(torch.tensor([[1.0, -2.0], [0.5, 0.5]]))`` is ``tensor([3., 1.])``.
    """

    name: str = ""
    uses_graph: bool = False  # scores come from the tau-thresholded similarity graph
    row_wise: bool = False  # a neuron's score depends on its own weight vector alone (computed as rows are read)
    uses_distances: bool = False  # scores are summed distances to every other neuron (blockwise.DistanceSums)

    def __call__(self, vectors: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in vars(self).items())})"


def graph_of(vectors: torch.Tensor, tau: float, budget: GraphBudget | None = None) -> torch.Tensor | SparseGraph:
    """The tau-thresholded similarity graph of ``vectors`` (n x d): the dense matrix (``graph.adjacency_of``, on the
    vectors' device) when its n x n float32 values fit ``budget.block_bytes`` (default: CPRUNE_GRAPH_MEMORY_MB's),
    else a ``SparseGraph`` computed a block at a time (``blockwise.similarity_graph``; ConfigError beyond its edge
    budget: raise tau). Both give the same edges, and centralities equal to 1e-6."""
    budget = budget or GraphBudget.from_settings()
    n = vectors.shape[0]
    return adjacency_of(vectors, tau) if 4 * n * n <= budget.block_bytes else similarity_graph(vectors, tau, budget)


class GraphCriterion(Criterion):
    """A centrality of the neuron graph: cosine similarities of the weight vectors above ``tau``
    (``graph.threshold_adjacency``), self-loops removed. ConfigError for ``tau`` outside [0, 1).

    ``from_adjacency(adjacency)`` gives the ``centrality.Centrality`` (scores, and whether a power
    iteration converged) of a graph already thresholded; calling the criterion gives its scores (``graph_of``:
    dense for a layer that fits one block, sparse beyond).
    """

    uses_graph = True

    def __init__(self, tau: float = DEFAULT_TAU):
        self.tau = TAU.check(tau, "tau")

    def __call__(self, vectors: torch.Tensor) -> torch.Tensor:
        adjacency = graph_of(vectors, self.tau)
        return self.from_adjacency(adjacency, vectors.device).scores

    def from_adjacency(self, adjacency: torch.Tensor | SparseGraph, device: torch.device | str = "cpu") -> Centrality:
        """The scores from a graph already thresholded: an n x n matrix (dense or sparse CSR; symmetric,
        non-negative), or a ``SparseGraph`` (made a sparse CSR tensor on ``device``)."""
        if isinstance(adjacency, SparseGraph):
            adjacency = adjacency.adjacency(device)
        return self._centrality(adjacency)

    def _centrality(self, adjacency: torch.Tensor) -> Centrality:
        raise NotImplementedError


class EigenvectorCentrality(GraphCriterion):
    """The paper's criterion (arXiv 2512.12543): keep the most central neurons of the similarity graph.

    Eigenvector centrality (Bonacich 1972, "Factoring and weighting approaches to status scores and
    clique identification") is the leading eigenvector of the adjacency matrix, found by power
    iteration (``centrality.eigenvector_centrality``). Awkward cases: a graph with no edge (all
    similarities <= tau) scores every neuron 1/sqrt(n), a tie that ``pruning.kept_indices`` breaks; nodes
    outside the dominant component score about 0; sparse graphs of many components with nearly equal
    leading eigenvalues converge slowly, and past RANKING_MAX_ITER steps the last iterate is the score,
    flagged as not converged.
    """

    name = "eigenvector"

    def _centrality(self, adjacency: torch.Tensor) -> Centrality:
        return eigenvector_centrality(adjacency, max_iter=RANKING_MAX_ITER)


class InverseEigenvector(GraphCriterion):
    """A control for the paper's premise: minus eigenvector centrality, so the least central neurons are kept."""

    name = "inverse-eigenvector"

    def _centrality(self, adjacency: torch.Tensor) -> Centrality:
        centrality = eigenvector_centrality(adjacency, max_iter=RANKING_MAX_ITER)
        return replace(centrality, scores=-centrality.scores)


class Degree(GraphCriterion):
    """Weighted degree (a node's strength): the sum of a neuron's edge weights above tau. The simplest graph
    centrality, against which eigenvector centrality's extra work can be judged; 0 for an isolated neuron."""

    name = "degree"

    def _centrality(self, adjacency: torch.Tensor) -> Centrality:
        return Centrality(weighted_degree(adjacency), True, 0, 0.0, 0.0)


class PageRank(GraphCriterion):
    """PageRank (Page, Brin, Motwani and Winograd 1999, "The PageRank Citation Ranking: Bringing Order to
    the Web") of the undirected weighted graph, damping 0.85 (``centrality.pagerank``, iterated in float64);
    scores sum to 1, returned in float32. Past RANKING_MAX_ITER steps the last iterate, flagged as not
    converged."""

    name = "pagerank"

    def _centrality(self, adjacency: torch.Tensor) -> Centrality:
        result = pagerank(adjacency, max_iter=RANKING_MAX_ITER)
        return replace(result, scores=result.scores.float())


class L1Norm(Criterion):
    """The L1 norm of each weight vector: Li et al. 2017, "Pruning Filters for Efficient ConvNets" (ICLR),
    which prunes the filters of smallest absolute weight sum. A magnitude baseline without any graph."""

    name = "l1"
    row_wise = True

    def __call__(self, vectors: torch.Tensor) -> torch.Tensor:
        return vectors.float().abs().sum(1)


class L2Norm(Criterion):
    """The L2 norm of each weight vector: the variant of Li et al. 2017 ("Pruning Filters for Efficient
    ConvNets") that ranks filters by their Euclidean norm."""

    name = "l2"
    row_wise = True

    def __call__(self, vectors: torch.Tensor) -> torch.Tensor:
        return vectors.float().norm(dim=1)


class FPGM(Criterion):
    """Filter pruning via geometric median (He et al. 2019, "Filter Pruning via Geometric Median for Deep
    Convolutional Neural Networks Acceleration", CVPR): neurons closest to the others are the most
    replaceable, so the score is the summed Euclidean distance to all other neurons (``distance_sums``: a
    block of rows at a time, bounded memory). Duplicate neurons score alike; n = 1 scores 0."""

    name = "fpgm"
    uses_distances = True

    def __call__(self, vectors: torch.Tensor) -> torch.Tensor:
        return distance_sums(vectors)


def distance_sums(vectors: torch.Tensor, budget: GraphBudget | None = None) -> torch.Tensor:
    """Each row's summed Euclidean distance to every row (``torch.cdist(v, v).sum(1)``, float32, on the vectors'
    device), a block of rows at a time: at most ``budget.block_bytes`` of distances at once (default: from
    CPRUNE_GRAPH_MEMORY_MB), whatever n. The same numbers as the whole matrix's: each block is cdist's own
    product of those rows with every row."""
    vectors = vectors.float()
    n = vectors.shape[0]
    step = (budget or GraphBudget.from_settings()).rows_per_block(n, 8 * n)  # a block's distances and cdist's work
    return torch.cat([torch.cdist(vectors[start:start + step], vectors).sum(1) for start in range(0, n, step)]
                     or [vectors.new_zeros(0)])


class RandomScores(Criterion):
    """The control every criterion must beat: uniform random scores, from ``seed`` plus the layer's neuron
    count (so layers of different sizes draw differently), the same for the same seed and layer."""

    name = "random"

    def __init__(self, seed: int = 0):
        self.seed = seed

    def __call__(self, vectors: torch.Tensor) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed + vectors.shape[0])
        return torch.rand(vectors.shape[0], generator=generator).to(vectors.device)


CRITERIA: dict[str, type[Criterion]] = {
    c.name: c for c in (EigenvectorCentrality, InverseEigenvector, L1Norm, L2Norm, FPGM, Degree, PageRank, RandomScores)
}


def make_criterion(name: str, tau: float = DEFAULT_TAU, seed: int = 0) -> Criterion:
    """The criterion called ``name``, ready to score a layer's neurons.

    Parameters
    ----------
    name : str
        One of ``CRITERIA``: "eigenvector" (eigenvector centrality of the tau-thresholded similarity
        graph, the criterion of arXiv 2512.12543), "inverse-eigenvector", "degree" and "pagerank"
        (the same graph); "l1", "l2" (the weight vector's norm), "fpgm" (He et al. 2019), "random".
    tau : float, default DEFAULT_TAU (0.1)
        The graph criteria's similarity threshold, in [0, 1); the others ignore it.
    seed : int, default 0
        Seed of "random" (its scores also depend on the number of neurons); the others ignore it.

    Returns
    -------
    Criterion
        ``criterion(vectors)`` takes a layer's weight vectors (n neurons x d inputs, any float dtype,
        any device) and returns n float32 scores on the same device; higher means keep. A graph
        criterion also offers ``from_adjacency(adjacency)`` for an adjacency already thresholded.

    Raises
    ------
    ConfigError
        ``name`` is not a criterion (the message lists them), or a graph criterion's ``tau`` lies
        outside [0, 1).

    Example
    -------
    >>> import torch
    >>> make_criterion("l2")(torch.tensor([[3.0, 4.0], [1.0, 0.0]]))
    tensor([5., 1.])
    >>> make_criterion("eigenvector", tau=0.5)(torch.eye(3)).shape  # no edge: every neuron alike
    torch.Size([3])
    """
    cls = choose(name, CRITERIA, "criterion")
    if issubclass(cls, GraphCriterion):
        return cls(tau)
    if cls is RandomScores:
        return cls(seed)
    return cls()


def scores_for(module: nn.Module, criterion: Criterion, layer_name: str = "layer") -> torch.Tensor:
    """``criterion`` on a Linear or Conv2d module's weight vectors; NonFiniteWeightsError (naming
    ``layer_name``) for NaN or Inf weights, ConfigError for a module without neurons."""
    return criterion(weight_vectors(module, layer_name))


def _rank_normalise(scores: torch.Tensor) -> torch.Tensor:
    """Ranks in [0, 1]: puts criteria of different layers on one scale before averaging."""
    ranks = torch.empty_like(scores, dtype=torch.float32)
    ranks[torch.argsort(scores, stable=True)] = torch.arange(scores.numel(), dtype=torch.float32, device=scores.device)
    return ranks / max(scores.numel() - 1, 1)


class GroupImportance(tp.importance.Importance):
    """Any CPrune criterion as a torch-pruning importance, for ``tp.pruner.MetaPruner`` on any model.

    torch-pruning's dependency graph gathers the channels that must go together into a *group*: a
    layer's outputs, the BatchNorm after it, the depthwise convolution that follows, the next
    layers' inputs, and across a residual add every layer added to the same stream. The criterion
    scores each layer of the group whose own neurons the group removes: a Linear or Conv2d pruned
    on its outputs (torch-pruning's ``prune_linear_out_channels`` / ``prune_conv_out_channels``),
    depthwise convolutions excluded (their filters follow their producer's channels). One such
    layer: its scores as they are. Several (a residual stream): each layer's scores turned into
    ranks in [0, 1], then averaged, so layers of different sizes weigh the same.

    Parameters
    ----------
    criterion : Criterion
        What scores a layer's neurons, e.g. ``make_criterion("eigenvector", tau=0.1)``.
    module_names : dict[nn.Module, str], optional
        Names of the modules for messages (``{m: n for n, m in model.named_modules()}``); by
        default a layer is named by its class.

    Returns
    -------
    Calling it on a group returns a torch.Tensor of one score per channel of the group (float32,
    on the weights' device; higher: keep), or None when no layer of the group has neurons of its
    own: a group rooted at a layer CPrune has no neurons for (Conv1d, Conv3d, ConvTranspose2d,
    LSTM, ...). MetaPruner skips a group whose importance is None: its layers stay unpruned.

    Raises
    ------
    NonFiniteWeightsError
        A scored layer has NaN or Inf weights (the message names it).

    Notes
    -----
    Layers without weights (activations, pooling, flatten, the add itself) hold no channels of
    their own. BatchNorm, LayerNorm and PReLU channels in a group are removed with it but never
    scored. Where MetaPruner groups channels (grouped convolutions, attention heads) it averages
    the returned scores per channel group, as for its own importances. Scores come from the
    weights as they are when MetaPruner asks: with ``iterative_steps > 1``, from the already
    pruned layers.

    Example
    -------
    A network outside the registry, with a residual add around a depthwise convolution: the
    stem, the depthwise convolution and the projection share their 16 channels and lose the same 8.

    >>> import torch, torch_pruning as tp
    >>> from torch import nn
    >>> class Block(nn.Module):
    ...     def __init__(self, channels):
    ...         super().__init__()
    ...         self.depthwise = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
    ...         self.project = nn.Conv2d(channels, channels, 1)
    ...     def forward(self, x):
    ...         return x + self.project(torch.relu(self.depthwise(x)))
    >>> model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), Block(16), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    ...                       nn.Linear(16, 10))
    >>> importance = GroupImportance(make_criterion("eigenvector", tau=0.1))
    >>> pruner = tp.pruner.MetaPruner(model, torch.randn(1, 3, 32, 32), importance=importance, pruning_ratio=0.5,
    ...                               ignored_layers=[model[4]])
    >>> pruner.step()
    >>> model[0].out_channels, model[1].depthwise.groups, model[1].project.out_channels, model[4].in_features
    (8, 8, 8, 8)
    >>> model(torch.randn(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    """

    def __init__(self, criterion: Criterion, module_names: dict[nn.Module, str] | None = None):
        self.criterion = criterion
        self.module_names = module_names or {}

    @torch.no_grad()
    def __call__(self, group) -> torch.Tensor:
        per_layer = []
        for dep, _ in group:
            module = dep.target.module
            if not has_neurons(module) or is_depthwise(module) or dep.pruning_fn not in _OUT_CHANNEL_PRUNING:
                continue
            name = self.module_names.get(module, type(module).__name__)
            per_layer.append((scores_for(module, self.criterion, name), dep))
        if not per_layer:
            return None
        if len(per_layer) == 1:
            return per_layer[0][0]
        return torch.stack([_rank_normalise(s) for s, _ in per_layer]).mean(0)
