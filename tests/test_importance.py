import pytest
import torch

from cprune_core.errors import ConfigError
from cprune_core.criteria import CRITERIA, make_criterion

VECTORS = torch.tensor([[3.0, 0.0], [0.0, -1.0], [1.0, 1.0], [2.9, 0.1]])


@pytest.mark.parametrize("name", sorted(CRITERIA))
def test_every_criterion_returns_one_finite_score_per_neuron(name):
    scores = make_criterion(name, tau=0.1, seed=3)(torch.randn(40, 16))
    assert scores.shape == (40,) and torch.isfinite(scores).all()


def test_magnitude_criteria():
    assert make_criterion("l1")(VECTORS).tolist() == pytest.approx([3.0, 1.0, 2.0, 3.0])
    assert make_criterion("l2")(VECTORS).tolist() == pytest.approx([3.0, 1.0, 2 ** 0.5, (2.9**2 + 0.01) ** 0.5])


def test_fpgm_scores_neurons_near_the_geometric_median_lowest():
    vectors = torch.tensor([[0.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    scores = make_criterion("fpgm")(vectors)
    assert int(scores.argmin()) == 0  # the centre is the most replaceable


def test_inverse_eigenvector_reverses_the_ranking():
    torch.manual_seed(0)
    vectors = torch.randn(30, 6)
    forward = make_criterion("eigenvector", tau=0.0)(vectors)
    inverse = make_criterion("inverse-eigenvector", tau=0.0)(vectors)
    assert torch.equal(torch.argsort(forward), torch.argsort(-inverse))


def test_random_is_seeded():
    a = make_criterion("random", seed=1)(VECTORS)
    assert torch.equal(a, make_criterion("random", seed=1)(VECTORS))
    assert not torch.equal(a, make_criterion("random", seed=2)(VECTORS))


def test_bad_names_and_tau():
    with pytest.raises(ConfigError, match="choose one of"):
        make_criterion("betweenness")
    with pytest.raises(ValueError, match="tau"):
        make_criterion("eigenvector", tau=1.5)
