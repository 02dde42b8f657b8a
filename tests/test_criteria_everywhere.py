"""Every criterion on every layer of every registry backbone, at several taus: each one gives a finite score per
neuron or a note naming it (issue 28: a power iteration stuck at rounding noise took a page and a command down).

Torchvision backbones are built with random init (no download); the offline default with its real weights.
"""
import numpy as np
import pytest
import torch

from cprune_core.criteria import CRITERIA, make_criterion
from cprune_core.graph import cosine_similarity, threshold_adjacency
from cprune_core.layer_view import layer_scores
from cprune_core.model_source import BackboneSource
from cprune_core.registry import BACKBONES

pytestmark = pytest.mark.slow

TAUS = (0.0, 0.1, 0.2, 0.5, 0.9)
GRAPH_CRITERIA = [name for name, cls in CRITERIA.items() if getattr(cls, "uses_graph", False)]
OTHER_CRITERIA = [name for name in CRITERIA if name not in GRAPH_CRITERIA]


@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_every_criterion_scores_every_layer_at_every_tau(backbone):
    source = BackboneSource.load(backbone, "pretrained" if BACKBONES[backbone].offline else "random")
    not_converged = []
    for layer in source.graph_layers:
        vectors = source.weight_vectors(layer)
        scores, notes = layer_scores(vectors, OTHER_CRITERIA, 0.1)
        assert notes == {} and set(scores) == set(OTHER_CRITERIA), (layer, notes)
        similarity = cosine_similarity(vectors)
        for tau in TAUS:
            adjacency = threshold_adjacency(similarity, tau)
            scores, notes = layer_scores(vectors, GRAPH_CRITERIA, tau, adjacency)
            assert set(scores) == set(GRAPH_CRITERIA), (layer, tau, notes)  # none failed outright
            for name, values in scores.items():
                assert values.shape == (len(vectors),) and np.isfinite(values).all(), (layer, tau, name)
            assert set(notes) <= {"eigenvector", "inverse-eigenvector"}, (layer, tau, notes)  # pagerank converges
            not_converged += [(layer, tau) for name in notes if name == "eigenvector"]
    # Slow convergence is the exception, and always said: at most a few (layer, tau) pairs per backbone.
    assert len(not_converged) <= len(source.graph_layers), not_converged


def test_a_criterion_that_fails_is_named_and_the_others_still_score(monkeypatch):
    def out_of_memory(self, vectors):
        raise MemoryError("no room for the pairwise distances")

    monkeypatch.setattr(type(make_criterion("fpgm")), "__call__", out_of_memory)
    scores, notes = layer_scores(torch.randn(12, 5), ["l1", "fpgm", "eigenvector"], 0.1)
    assert set(scores) == {"l1", "eigenvector"}
    assert notes == {"fpgm": "fpgm could not be computed (no room for the pairwise distances)"}
