from __future__ import annotations

import dataclasses

import pytest

from cxrbench.errors import ProtocolError
from cxrbench.protocol import TRACKS, derive_seed, get_track


def test_track_hash_is_stable_and_changes_with_the_definition():
    smoke = get_track("smoke")
    assert smoke.hash == get_track("smoke").hash
    changed = dataclasses.replace(smoke, budget=dataclasses.replace(smoke.budget, steps=smoke.budget.steps + 1))
    assert changed.hash != smoke.hash
    assert len({t.hash for t in TRACKS.values()}) == len(TRACKS)


def test_unknown_track_error_names_the_choices():
    with pytest.raises(ProtocolError, match=r"must be one of \['default', 'paper', 'smoke'\], but got 'smok'"):
        get_track("smok")


def test_derived_seeds_depend_only_on_global_seed_and_keys():
    assert derive_seed(0, "a", 1) == derive_seed(0, "a", 1)
    assert derive_seed(0, "a", 1) != derive_seed(1, "a", 1)
    assert derive_seed(0, "a", 1) != derive_seed(0, "a", 2)
    assert 0 <= derive_seed(123, "x") < 2**31


def test_paper_track_uses_the_last_40_of_50_ddim_steps():
    steps = get_track("paper").extraction.timesteps
    assert len(steps) == 40 and steps[0] == 781 and steps[-1] == 1
    assert all(a - b == 20 for a, b in zip(steps, steps[1:]))
