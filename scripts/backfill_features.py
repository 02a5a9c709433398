"""Give results written before features files existed their ``<stem>.features.npz``, from the run's kept images.

For each result, the generated images its run kept in the work folder (``<workdir>/<stem>/generated.npz``)
are scored again exactly as a run scores them (``cxrbench.scoring.score_fidelity``: FID, KID, precision,
recall, MS-SSIM, conditional accuracy); every recomputed figure must equal the stored one (within
``cxrbench.rederive.REL_TOL``), which shows that the kept images are the ones the result was scored from.
Only then is the features file written and named in the result (``features_file``, ``features_sha256``);
no stored figure changes. A disagreement stops the script before it writes anything for that result.

    python scripts/backfill_features.py leaderboard/results/*__default__*.json --workdir .cxrbench-work

Results without generated images (``box-prior``, failed runs) are skipped: they need no features file.
Exit status: 0 when every result was backfilled or skipped, 1 when a figure disagreed or images are missing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from cxrbench.artifacts import write_features_file
from cxrbench.model import GENERATE
from cxrbench.plan import generation_plan, load_track_data
from cxrbench.protocol import TRACKS
from cxrbench.rederive import disagreements, rederivation_errors
from cxrbench.registry import get_registry
from cxrbench.results import atomic_write_json, load_result, validation_errors
from cxrbench.scoring import Scores, feature_extractors_to_run, score_fidelity


def rescore_fidelity(data: dict[str, Any], images: np.ndarray, registry: Any) -> Scores:
    """The fidelity scores of ``images`` under the result's track, seed and feature extractors."""
    track = TRACKS[data["track"]["name"]]
    test = load_track_data(track, registry).test
    _, _, index, labels = generation_plan(track, test, int(data["seed"]))
    names = feature_extractors_to_run(registry.feature_extractors, track.feature_extractors,
                                      sorted(data["evaluators"]))
    extractors = {name: registry.feature_extractors[name].factory for name in names}
    scores = Scores()
    real = np.stack([s.image for s in test])
    score_fidelity(scores, real, images, index, labels, extractors, int(data["seed"]))
    return scores


def backfill(path: Path, workdir: Path, registry: Any) -> list[str]:
    """Write the features file of the result at ``path``; the problems that kept it from being written."""
    data = load_result(path)
    problems = validation_errors(data)
    if problems:
        return [f"{path}: invalid result: {problem}" for problem in problems]
    if data["status"] != "ok" or GENERATE not in data["plugin"]["capabilities"]:
        print(f"{path}: skipped, no generated images to ship")
        return []
    kept = workdir / path.name.removesuffix(".json") / "generated.npz"
    if not kept.is_file():
        return [f"{path}: the run's generated images {kept} are missing"]
    with np.load(kept) as archive:
        images = archive["images"]
    scores = rescore_fidelity(data, images, registry)
    sources = dict.fromkeys(scores.metrics, kept.name)
    problems = disagreements(data, scores, sources, path)
    if problems:
        return problems
    data.update(write_features_file(path, scores.features))
    atomic_write_json(path, data)
    problems = rederivation_errors(data, path, registry)
    if not problems:
        fid = data["metrics"].get("fid_domain", {}).get("value")
        print(f"{path}: wrote {data['features_file']} ({len(images)} images; fid_domain {fid} reproduced)")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+", type=Path, help="result JSON files")
    parser.add_argument("--workdir", type=Path, default=Path(".cxrbench-work"),
                        help="the work folder of the runs (default: .cxrbench-work)")
    args = parser.parse_args(argv)
    registry = get_registry()
    failed = 0
    for path in args.results:
        problems = backfill(path, args.workdir, registry)
        if problems:
            failed += 1
            print("\n".join(problems), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
