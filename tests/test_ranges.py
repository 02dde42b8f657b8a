"""Tests for cprune_core.ranges: each valid range and ``choose``, at their edges and on bad input."""
from __future__ import annotations

import math

import pytest

from cprune_core.errors import ConfigError
from cprune_core.ranges import DEFAULT_SEEDS, FRACTION, KEEP, SEEDS, TAU, Range, choose


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, True, False, "0.5", None, [0.5]])
def test_nan_infinities_booleans_and_non_numbers_are_never_in_a_range(value):
    wide = Range(-1e9, 1e9)
    assert value not in wide
    with pytest.raises(ConfigError, match="must be in"):
        wide.check(value, "x")


def test_closed_and_open_bounds():
    assert 0.0 in TAU and 1.0 not in TAU and 0.999 in TAU and -0.01 not in TAU  # [0, 1)
    assert 0.0 not in KEEP and 1.0 in KEEP and 1e-9 in KEEP  # (0, 1]
    assert 0.0 in FRACTION and 1.0 not in FRACTION  # [0, 1)
    assert (str(TAU), str(KEEP), str(FRACTION)) == ("[0, 1)", "(0, 1]", "[0, 1)")


def test_integer_ranges_take_whole_numbers_only():
    assert 1 in SEEDS and 1000 in SEEDS and 0 not in SEEDS and 1001 not in SEEDS
    assert 2.0 not in SEEDS  # a float is no count, even a whole one
    assert str(SEEDS) == "[1, 1000]" and DEFAULT_SEEDS in SEEDS
    with pytest.raises(ConfigError, match=r"seeds must be in \[1, 1000\] \(a whole number\), got 2.5"):
        SEEDS.check(2.5, "seeds")


def test_check_returns_the_value_unchanged_and_names_it_when_refusing():
    assert TAU.check(0.25, "tau") == 0.25
    with pytest.raises(ConfigError, match=r"^tau must be in \[0, 1\), got 1.0.$"):
        TAU.check(1.0, "tau")


def test_choose_from_a_mapping_gives_its_value_and_from_a_collection_the_name():
    assert choose("b", {"a": 1, "b": 2}, "letter") == 2
    assert choose("cpu", ("auto", "cpu"), "device") == "cpu"
    with pytest.raises(ConfigError, match=r"^Unknown device 'gpu'; choose one of auto, cpu.$"):
        choose("gpu", ("auto", "cpu"), "device")
    with pytest.raises(ConfigError, match="Unknown criterion"):
        choose(["unhashable"], {"eigenvector": 1}, "criterion")
