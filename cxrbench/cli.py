"""Command line: list / run / rescore / leaderboard / compare / validate / schema / report / data / bench."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

from cxrbench.bench import add_arguments as add_bench_arguments
from cxrbench.bench import cmd_bench
from cxrbench.compare import compare_models, comparison_table
from cxrbench.data import describe_left_out
from cxrbench.distributed import on_main
from cxrbench.errors import CxrbenchError
from cxrbench.metric import FEATURES, MAPS
from cxrbench.protocol import TRACKS, get_track
from cxrbench.registry import get_registry
from cxrbench.results import json_safe, load_result, validation_errors

DEFAULT_WORKDIR = Path(".cxrbench-work")
#: Exit code of an error cxrbench did not raise on purpose (0: ok, 1: a run failed, 2: cannot start,
#: 130: interrupted).
UNEXPECTED_ERROR = 3


def _parse_options(pairs: list[str]) -> dict[str, dict[str, Any]]:
    """``MODEL.KEY=VALUE`` pairs -> {model: {key: value}}; values parsed as JSON when they can be."""
    options: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        if "=" not in pair or "." not in pair.split("=", 1)[0]:
            raise CxrbenchError(f"--option must look like MODEL.KEY=VALUE, but got {pair!r}")
        key, raw = pair.split("=", 1)
        model, name = key.split(".", 1)
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        options.setdefault(model, {})[name] = value
    return options


def cmd_list(args: argparse.Namespace) -> int:
    reg = get_registry()
    payload = {
        "models": [
            {"name": e.model_id, "distribution": e.plugin.distribution, "version": e.plugin.version,
             "plugin": e.plugin.name, "capabilities": list(e.capabilities), "description": e.cls.description}
            for e in sorted(reg.models.values(), key=lambda e: e.model_id)
        ],
        "datasets": [{"name": n, "distribution": e.plugin.distribution} for n, e in sorted(reg.datasets.items())],
        "feature_extractors": [{"name": n, "distribution": e.plugin.distribution}
                               for n, e in sorted(reg.feature_extractors.items())],
        "metrics": _metric_catalogue(),
        "tracks": [{"name": t.name, "version": t.version, "hash": t.hash, "runs_on": t.runs_on,
                    "description": t.description} for t in TRACKS.values()],
        "plugins": [{"name": p.name, "distribution": p.distribution, "version": p.version}
                    for p in reg.plugins.values()],
        "errors": [{"plugin": e.plugin, "distribution": e.distribution, "error": e.error} for e in reg.errors],
    }
    if args.json:
        print(json.dumps(payload, indent=2))
        return 0
    from tabulate import tabulate  # lazy: tabulate imports wcwidth, a fifth of `import cxrbench.cli`

    print("Models")
    print(tabulate([[m["name"], m["distribution"], m["version"], ", ".join(m["capabilities"])]
                    for m in payload["models"]], headers=["name", "distribution", "version", "capabilities"],
                   tablefmt="github"))
    print("\nDatasets:", ", ".join(d["name"] for d in payload["datasets"]) or "-")
    print("Feature extractors:", ", ".join(d["name"] for d in payload["feature_extractors"]) or "-")
    print("\nTracks")
    print(tabulate([[t["name"], t["version"], t["hash"], t["runs_on"], t["description"]] for t in payload["tracks"]],
                   headers=["name", "version", "hash", "runs on", "description"], tablefmt="github"))
    print("\nMetrics")
    print(tabulate([[m["name"], "higher" if m["higher_is_better"] else "lower", m["description"]]
                    for m in payload["metrics"]], headers=["name", "better", "description"], tablefmt="github"))
    for e in payload["errors"]:
        print(f"\nplugin {e['plugin']} ({e['distribution']}) failed to load: {e['error']}", file=sys.stderr)
    return 0


def _metric_catalogue() -> list[dict[str, Any]]:
    """Every registered metric output under the name a result gives it, and the core's fidelity metrics."""
    from cxrbench.metrics.fidelity import FIDELITY_METRICS  # lazy: imports scipy (seconds)

    pattern = {MAPS: "loc_<group>_{}", FEATURES: "{}_<extractor>"}
    rows = [{"name": pattern.get(e.metric.needs, "{}").format(output), "higher_is_better": higher,
             "description": e.metric.describe(output), "distribution": e.plugin.distribution}
            for e in get_registry().metrics.values() for output, higher in e.metric.directions.items()]
    rows += [{"name": k, "higher_is_better": v["higher_is_better"], "description": v["description"],
              "distribution": "cxrbench"}
             for k, v in FIDELITY_METRICS.items() if k in ("ms_ssim_within_prompt", "cond_auroc", "cond_top1")]
    return rows


def cmd_run(args: argparse.Namespace) -> int:
    # lazy, as every stage module below: the runner's stack (plan, scoring, artifacts) costs `--help` time
    from cxrbench.runner import run_benchmark

    track = get_track(args.track)
    seeds = args.seeds if args.seeds is not None else list(track.seeds)
    if args.compile:  # read by cxrbench.diffusion in this process and in --jobs workers
        from cxrbench.diffusion.acceleration import COMPILE_ENV  # lazy: cxrbench.diffusion imports torch

        os.environ[COMPILE_ENV] = "1"
    outcomes = run_benchmark(args.models, track, seeds, Path(args.out), workdir=Path(args.workdir),
                             options=_parse_options(args.option), show_progress=not args.quiet, device=args.device,
                             feature_extractors=args.feature_extractors, checkpoint_every=args.checkpoint_every,
                             jobs=args.jobs, overwrite=args.overwrite)
    # every process has the outcomes; the main one says them
    on_main(lambda: _print_outcomes(outcomes, args.workdir))
    return 0 if all(o.status == "ok" for o in outcomes) else 1


def _print_outcomes(outcomes: list[Any], workdir: str) -> None:
    from cxrbench.runner import summary_table, unavailable_metrics_lines  # lazy: see cmd_run

    print(summary_table(outcomes))
    for line in unavailable_metrics_lines(outcomes):  # said here, not only inside the result files
        print(line)
    for o in outcomes:
        if o.error:
            print(f"{o.model} seed {o.seed} failed at {o.error} (details: {workdir}/.../error.log)", file=sys.stderr)
        print(f"result: {o.result_path}")


#: Files a run writes beside its result JSON; `validate` re-derives the result's figures from them, and
#: skips them when they are named on the command line.
COMPANION_SUFFIXES = (".samples.jsonl", ".maps.npz", ".features.npz")


def cmd_validate(args: argparse.Namespace) -> int:
    from cxrbench.rederive import rederivation_errors  # lazy: the scoring stack (see cmd_run)

    bad = 0
    for path in args.files:
        companion = next((s for s in COMPANION_SUFFIXES if str(path).endswith(s)), None)
        if companion is not None:
            result = Path(str(path)[: -len(companion)] + ".json")
            if result.is_file():
                print(f"{path}: skipped, a file of {result.name} (validate checks the result JSON)")
                continue
            bad += 1
            print(f"{path}: INVALID\n  - no result {result.name} beside it", file=sys.stderr)
            continue
        try:
            data = load_result(Path(path))
            problems = validation_errors(data) or rederivation_errors(data, Path(path))
        except CxrbenchError as exc:
            problems = [str(exc)]
        if problems:
            bad += 1
            print(f"{path}: INVALID\n  - " + "\n  - ".join(problems), file=sys.stderr)
        else:
            print(f"{path}: ok")
    return 1 if bad else 0


def cmd_schema(args: argparse.Namespace) -> int:
    from cxrbench.result_schema import result_schema_text
    from cxrbench.results import atomic_write_text

    if args.out is None:
        sys.stdout.write(result_schema_text())
        return 0
    atomic_write_text(Path(args.out), result_schema_text())
    print(f"wrote {args.out}")
    return 0


def cmd_rescore(args: argparse.Namespace) -> int:
    from cxrbench.rescore import rescore_result  # lazy: the scoring stack (see cmd_run)

    registry, failed = get_registry(), 0
    for path in args.results:
        try:
            outcome = rescore_result(Path(path), Path(args.workdir), registry)
        except CxrbenchError as exc:
            failed += 1
            print(f"{path}: NOT RESCORED\n  - {exc}", file=sys.stderr)
            continue
        changed = ", ".join(outcome.changed[:6]) + (f" and {len(outcome.changed) - 6} more" if len(outcome.changed) > 6 else "")
        print(f"{path}: {outcome.status}" + (f"; changed: {changed}" if outcome.changed else "; no figure changed"))
    return 1 if failed else 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    # lazy: the leaderboard imports matplotlib and scipy; rederive, the scoring stack (see cmd_run)
    from cxrbench.leaderboard import check_leaderboard, render_leaderboard
    from cxrbench.leaderboard.explanation import regenerate_command
    from cxrbench.rederive import load_reproducible_results

    records = load_reproducible_results(Path(args.results))
    command = regenerate_command(args.results, args.out, tuple(args.report))
    options = {"command": command, "report_dirs": [Path(r) for r in args.report]}
    if args.check:
        stale = check_leaderboard(records, Path(args.out), **options)
        if stale:
            print(f"leaderboard is out of date; these files differ from what `{command}` writes: "
                  + ", ".join(stale), file=sys.stderr)
            return 1
        print(f"leaderboard in {args.out} matches {len(records)} results")
        return 0
    for path in render_leaderboard(records, Path(args.out), **options):
        print(f"wrote {path}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    track = get_track(args.track)
    seeds = args.seeds if args.seeds is not None else list(track.seeds)
    if not args.no_run:
        from cxrbench.runner import run_benchmark  # lazy: see cmd_run

        outcomes = run_benchmark([args.model_a, args.model_b], track, seeds, Path(args.results),
                                 workdir=Path(args.workdir), show_progress=not args.quiet, device=args.device,
                                 overwrite=args.overwrite)
        failed = [o for o in outcomes if o.status != "ok"]
        if failed:
            on_main(lambda: print("\n".join(f"{o.model} seed {o.seed} failed: {o.error}" for o in failed),
                                  file=sys.stderr))
            return 1
    on_main(lambda: _print_comparison(args, track.name, seeds))  # the main process compares and reports
    return 0


def _print_comparison(args: argparse.Namespace, track: str, seeds: list[int]) -> None:
    rows = compare_models(Path(args.results), args.model_a, args.model_b, track, seeds)
    if args.json:
        print(json.dumps(json_safe(rows), indent=2))
    else:
        print(f"A = {args.model_a}, B = {args.model_b}, track {track}, seeds {seeds}")
        print(comparison_table(rows, args.model_a, args.model_b))


def cmd_data_show(args: argparse.Namespace) -> int:
    from cxrbench.data.show import contact_sheet, sheet_samples  # lazy: imports matplotlib

    factory = get_registry().dataset(args.dataset).factory
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)  # before the data is read: a bad --out fails at once
    # Draw a pool and pick a few of every label, so the sheet shows each finding.
    samples, left_out = sheet_samples(args.dataset, factory, args.per_label, args.image_size, args.seed,
                                      args.root)
    if left_out:
        print(describe_left_out(args.dataset, left_out))
    path = out / f"{args.dataset}_contact_sheet.png"
    contact_sheet(samples, path)
    print(f"wrote {path}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from cxrbench.report import write_report  # lazy: the scoring stack (see cmd_run) and matplotlib

    def skipped(path: Path) -> None:
        print(f"skipped {path}: its model does not localize, so it has no attention maps")

    leaderboard = Path(args.leaderboard) if args.leaderboard else None
    index = write_report([Path(p) for p in args.results], Path(args.out), on_skip=skipped, leaderboard_dir=leaderboard)
    print(f"wrote {index} and one PNG per class and test image beside it")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cxrbench", description=__doc__)
    parser.add_argument("--debug", action="store_true",
                        help="print the traceback of an unexpected error (default: one line and a log file)")
    sub = parser.add_subparsers(dest="command", required=True)
    for add_subcommand in (_add_list_parser, _add_run_parser, _add_rescore_parser, _add_validate_parser,
                           _add_leaderboard_parser, _add_compare_parser, _add_report_parser, _add_data_parser,
                           _add_bench_parser):
        add_subcommand(sub)
    return parser


def _add_list_parser(sub: Any) -> None:
    p = sub.add_parser("list", help="models, datasets, feature extractors, metrics and tracks")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)


def _add_run_parser(sub: Any) -> None:
    p = sub.add_parser("run", help="fine-tune, generate, localize and evaluate models on a track")
    p.add_argument("models", nargs="+", metavar="MODEL")
    p.add_argument("--track", default="smoke")
    p.add_argument("--seed", "--seeds", dest="seeds", type=int, nargs="+", default=None,
                   help="seeds to run (default: the track's seeds)")
    p.add_argument("--out", default="results", help="folder for result JSON and per-sample files")
    p.add_argument("--workdir", default=str(DEFAULT_WORKDIR), help="stage artifacts for resuming")
    p.add_argument("--compile", action="store_true",
                   help="compile the UNet's training and sampling forwards with torch.compile (pays for long fits; "
                        "its first compilation takes minutes, docs/performance.md)")
    p.add_argument("--jobs", type=int, default=1,
                   help="runs at a time, each in its own process with its share of the CPU threads (default 1)")
    p.add_argument("--option", action="append", default=[], metavar="MODEL.KEY=VALUE")
    p.add_argument("--device", default="cpu")
    p.add_argument("--feature-extractor", dest="feature_extractors", action="append", default=None,
                   metavar="NAME", help="score fidelity with these extractors only (repeatable; default: the "
                   "track's, plus inception/xrv when CXRBENCH_INCEPTION_WEIGHTS/CXRBENCH_XRV_WEIGHTS is set)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--overwrite", action="store_true",
                   help="replace results in --out that another track version or other --option values made "
                        "(without it the run refuses before anything trains)")
    p.add_argument("--checkpoint-every", type=int, default=None, metavar="STEPS",
                   help="write training checkpoints every STEPS steps; an interrupted fit resumes from the latest")
    p.set_defaults(func=cmd_run)


def _add_rescore_parser(sub: Any) -> None:
    p = sub.add_parser("rescore", help="recompute results' metrics from their runs' kept maps and images (the work "
                       "folder), without training again")
    p.add_argument("results", nargs="+", metavar="RESULT", type=Path)
    p.add_argument("--workdir", default=str(DEFAULT_WORKDIR), help="the work folder the runs kept their outputs in")
    p.set_defaults(func=cmd_rescore)


def _add_validate_parser(sub: Any) -> None:
    p = sub.add_parser("validate", help="check result files against the schema and their track's hash, and "
                       "re-derive their figures from the per-sample and features files beside them")
    p.add_argument("files", nargs="+")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("schema", help="print the JSON Schema of a result file (committed as docs/result-schema.json)")
    p.add_argument("--out", default=None, metavar="PATH", help="write it to PATH instead")
    p.set_defaults(func=cmd_schema)


def _add_leaderboard_parser(sub: Any) -> None:
    p = sub.add_parser("leaderboard", help="render README.md, index.html, leaderboard.csv and the trade-off plot")
    p.add_argument("--results", default="leaderboard/results")
    p.add_argument("--out", default="leaderboard")
    p.add_argument("--check", action="store_true", help="fail when the committed files differ from a fresh render")
    p.add_argument("--report", action="append", default=[], metavar="DIR",
                   help="an attention report folder (`cxrbench report --out DIR`) to link to; repeatable")
    p.set_defaults(func=cmd_leaderboard)


def _add_compare_parser(sub: Any) -> None:
    p = sub.add_parser("compare", help="paired differences between two models on a track")
    p.add_argument("model_a")
    p.add_argument("model_b")
    p.add_argument("--track", default="smoke")
    p.add_argument("--seeds", type=int, nargs="+", default=None)
    p.add_argument("--results", default="results",
                   help="folder of the results to compare; missing runs are written there (default: results)")
    p.add_argument("--workdir", default=str(DEFAULT_WORKDIR))
    p.add_argument("--no-run", action="store_true", help="only compare existing results")
    p.add_argument("--overwrite", action="store_true",
                   help="replace results that another track version or other options made (as `run --overwrite`)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--device", default="cpu")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_compare)


def _add_report_parser(sub: Any) -> None:
    p = sub.add_parser("report", help="attention overlays: each result's finding-word and EOS maps per class")
    p.add_argument("results", nargs="+", help="result JSON files of one track (their .maps.npz beside them)")
    p.add_argument("--out", default="report", help="folder for index.html and the PNGs")
    p.add_argument("--leaderboard", default=None, metavar="DIR",
                   help="the leaderboard folder (its index.html) the report links back to")
    p.set_defaults(func=cmd_report)


def _add_data_parser(sub: Any) -> None:
    p = sub.add_parser("data", help="look at a dataset")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    q = data_sub.add_parser("show", help="write a contact sheet PNG of images with boxes and reports")
    q.add_argument("dataset")
    q.add_argument("--out", default="data-sheets")
    q.add_argument("--per-label", type=int, default=2, help="studies of each label on the sheet")
    q.add_argument("--image-size", type=int, default=128)
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--root", default=None, metavar="DIR",
                   help="a real dataset's folder (default: its CXRBENCH_*_ROOT variable; docs/datasets.md)")
    q.set_defaults(func=cmd_data_show)
    _add_data_audit_parser(data_sub)


def _add_data_audit_parser(data_sub: Any) -> None:
    from cxrbench.data.audit import add_box_prior_arguments, cmd_box_prior_audit  # lazy: imports scipy

    q = data_sub.add_parser("audit", help="class box priors (leave-one-out) beside ChestX-ray14's, and the "
                            "track's box-prior baseline")
    add_box_prior_arguments(q)
    q.set_defaults(func=cmd_box_prior_audit)


def _add_bench_parser(sub: Any) -> None:
    p = sub.add_parser("bench", help="measure the speed of pipeline parts (extraction: batched vs sequential)")
    add_bench_arguments(p)
    p.set_defaults(func=cmd_bench)


def _report_unexpected(command: str) -> None:
    """One line for an error cxrbench did not raise on purpose; the traceback goes to a log file."""
    exc = sys.exc_info()[1]
    what = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, OSError) and exc.filename is not None:
        what = f"{exc.filename}: {exc.strerror or exc}"
    log = Path(tempfile.gettempdir()) / f"cxrbench-error-{os.getpid()}.log"
    try:
        log.write_text(traceback.format_exc())
        where = f"traceback in {log}"
    except OSError:
        where = "run with --debug for the traceback"
    print(f"cxrbench: error: `cxrbench {command}` failed: {what} ({where})", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CxrbenchError as exc:
        print(f"cxrbench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ncxrbench: interrupted; run the same command again to continue from the last finished stage",
              file=sys.stderr)
        return 130
    except Exception:
        if args.debug:
            raise
        _report_unexpected(args.command)
        return UNEXPECTED_ERROR


if __name__ == "__main__":
    sys.exit(main())
