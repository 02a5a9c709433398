"""Recompute the KID of committed results under the current KID definition (``METRIC_VERSIONS["kid"]``).

For each result with a features file, every ``kid_<extractor>`` entry is recomputed from the shipped
generated features and the track's real test features exactly as a run scores them
(``cxrbench.scoring.score_extractor``, the result's seed); no other figure changes and the features file
is only read (its sha256 is checked, not rewritten). The result's ``metric_versions`` is set to the
current ``METRIC_VERSIONS``. Results without figures to recompute (failed runs, ``box-prior``, whose KID
is null) only get ``metric_versions``.

    python scripts/rescore_kid.py leaderboard/results/*.json

Exit status: 0 when every result was rescored, 1 when one could not be (the message names the file).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from cxrbench.protocol import TRACKS
from cxrbench.rederive import file_sha256, features_path_for, real_features
from cxrbench.registry import get_registry
from cxrbench.results import METRIC_VERSIONS, atomic_write_json, load_result
from cxrbench.runner import load_track_data
from cxrbench.scoring import Scores, score_extractor


def rescored_kid(data: dict[str, Any], path: Path, registry: Any) -> dict[str, dict[str, Any]]:
    """The ``kid_<extractor>`` entries of the result at ``path``, recomputed from its features file."""
    stored = [name for name, entry in data["metrics"].items()
              if name.startswith("kid_") and entry.get("value") is not None]
    if not stored:
        return {}
    features = features_path_for(path)
    if file_sha256(features) != data.get("features_sha256"):
        raise ValueError(f"{features}: sha256 differs from the result's features_sha256")
    arrays = dict(np.load(features))
    track = TRACKS[data["track"]["name"]]
    test = load_track_data(track, registry).test
    entries = {}
    for metric in stored:
        name = metric[len("kid_"):]
        real = real_features(track, name, test, registry, data["evaluators"][name].get("sha256"))
        scores = Scores()
        score_extractor(scores, name, real, arrays[f"features/{name}"].astype(np.float64), int(data["seed"]))
        entries[metric] = scores.metrics[metric]
    return entries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path)
    args = parser.parse_args(argv)
    registry = get_registry()
    failed = False
    for path in args.results:
        data = load_result(path)
        try:
            entries = rescored_kid(data, path, registry) if data.get("status") == "ok" else {}
        except (OSError, KeyError, ValueError) as exc:
            print(f"{path}: cannot rescore KID: {exc}", file=sys.stderr)
            failed = True
            continue
        for metric, entry in entries.items():
            old = data["metrics"][metric]
            print(f"{path.name} {metric}: {old['value']:.4f} [{old['ci_low']:.4f}, {old['ci_high']:.4f}] -> "
                  f"{entry['value']:.4f} [{entry['ci_low']:.4f}, {entry['ci_high']:.4f}] ({entry.get('note')})")
            data["metrics"][metric] = entry
        data["metric_versions"] = dict(METRIC_VERSIONS)
        atomic_write_json(path, data)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
