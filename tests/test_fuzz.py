"""A bounded fuzz run on every test run: each reader of untrusted bytes gets
its corpus (tests/fuzz/corpus/, grown by scripts/fuzz) and a few hundred
deterministic mutations of genuine inputs. Zero uncaught exceptions, zero
acceptances of altered data."""

from __future__ import annotations

import random

import pytest

from .fuzz.targets import TARGETS, mutate

ROUNDS = 1500


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_genuine_inputs_are_accepted(name):
    target = TARGETS[name]
    for seed in target.seed_inputs():
        assert target.attempt(seed) == "accepted"


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_the_corpus_and_mutations_never_crash_a_reader_or_pass_as_genuine(name):
    target = TARGETS[name]
    rng = random.Random(f"fuzz-{name}")
    seeds = target.seed_inputs()
    inputs = target.corpus() + [mutate(rng.choice(seeds), rng, seeds) for _ in range(ROUNDS)]
    outcomes = {"accepted": 0, "refused": 0}
    for data in inputs:
        outcomes[target.attempt(data)] += 1  # a bug raises here, with the input in the trace
    assert outcomes["refused"] > len(inputs) // 2  # the mutations really were hostile
