"""Command line: ``subsetsearch run``, ``score``, ``study``, ``report`` and ``schema``.

No logic lives here: arguments go to ``subsetsearch.pipeline``; a bad input
comes back as one line on stderr and exit code 2, never a traceback. ``score``
and ``schema`` need the core only; ``run``, ``study`` and ``report`` need the
``train`` extra (``report`` only its pydantic, PyYAML and matplotlib), checked
before any work starts: one line naming the ``pip install`` that fixes it,
exit code 1.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer

from subsetsearch import __version__
from subsetsearch.acquisition import FUNCTIONS, NEEDS_LABELS, NEEDS_ORDER
from subsetsearch.dynamics import DEFAULT_WINDOW
from subsetsearch.errors import InputError, SubsetsearchWarning
from subsetsearch.executors.base import ExecutorError
from subsetsearch.internal.extras import MissingExtraError, extra_of, install_line, require_extra

EXIT_BAD_INPUT = 2
#: What ``report`` imports of the train extra: it reads run directories, never PyTorch.
REPORT_MODULES = ("pydantic", "yaml", "matplotlib")

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Find a subset of a labeled training set that trains as well as the whole (ensemble active learning).",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"subsetsearch {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Find a subset of a labeled training set that trains as well as the whole."""


@app.command()
def score(
    function: Annotated[
        str,
        typer.Option(
            "--function",
            "-f",
            help=f"One of: {', '.join(FUNCTIONS)}; several joined by commas (the first chooses the subset, "
            "--scores-out gets all), or all (every function the inputs allow; mutual_information chooses). "
            f"Need --labels: {', '.join(NEEDS_LABELS)}; follow the members' order: {', '.join(NEEDS_ORDER)}.",
        ),
    ],
    budget: Annotated[
        str,
        typer.Option("--budget", "-b", help="Fraction of the pool (0.4 or 40%) or a count (500, no decimal point)."),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Subset table, .csv or .parquet: index, score; best first.")],
    labels: Annotated[
        Path | None,
        typer.Option("--labels", help="[N] integer classes, .npy or a Parquet column; needed by error_count."),
    ] = None,
    labels_column: Annotated[
        str | None,
        typer.Option("--labels-column", help="The Parquet column of --labels (default: its only one, or 'label')."),
    ] = None,
    logits: Annotated[bool, typer.Option("--logits", help="Members hold logits; apply a stable softmax.")] = False,
    exclude: Annotated[Path | None, typer.Option("--exclude", help="Indices (.npy) that cannot be selected.")] = None,
    skip_top: Annotated[
        float, typer.Option("--skip-top", help="Fraction of the top scores set aside as outliers.")
    ] = 0.0,
    skip_disagreement: Annotated[
        bool,
        typer.Option(
            "--skip-disagreement",
            help="Leave out the samples on which every member predicts a different class (outliers, the paper's "
            "ImageNet rule).",
        ),
    ] = False,
    balance: Annotated[
        str,
        typer.Option(
            "--balance",
            help="none: one budget for the pool (default); class: a quota per class in the pool's proportions, each "
            "filled by that class's best (needs --labels).",
        ),
    ] = "none",
    coverage: Annotated[
        int | None,
        typer.Option(
            "--coverage",
            metavar="K",
            help="Coverage-centric selection: split the score range into K equal-width strata and spread the budget "
            "evenly over them, at random within each (with --balance class, within each class).",
        ),
    ] = None,
    prune_hardest: Annotated[
        float | None,
        typer.Option(
            "--prune-hardest",
            metavar="BETA",
            help="With --coverage: first set aside this fraction of the highest scores (likely mislabeled), in [0, 1).",
        ),
    ] = None,
    direction: Annotated[
        str,
        typer.Option(
            "--direction",
            help="highest: the highest scores first (the paper's rule, default); lowest: the lowest first (the "
            "easiest samples, for very small subsets).",
        ),
    ] = "highest",
    seed: Annotated[
        int, typer.Option("--seed", help="Seed of the tie-breaking order and of --coverage's sampling.")
    ] = 0,
    scores_out: Annotated[
        Path | None,
        typer.Option(
            "--scores-out",
            help="Every sample's score, .csv or .parquet: index, score (several functions: index and a column each).",
        ),
    ] = None,
    window: Annotated[
        int | None,
        typer.Option(
            "--window",
            help=f"dyn_unc's window J: consecutive members per std, from 2 to M (default {DEFAULT_WINDOW}; with "
            "--stats, the one the statistics were kept with).",
        ),
    ] = None,
    state: Annotated[
        Path | None,
        typer.Option(
            "--state",
            help="Resumable job: save the ensemble statistics in this .npz (in memory), or in this directory "
            "(memory-mapped, for statistics larger than memory); a rerun skips what they hold.",
        ),
    ] = None,
    saved_stats: Annotated[
        list[Path] | None,
        typer.Option(
            "--stats",
            help="Statistics saved by subsetsearch.torch.PoolScorer (inside your training loop), instead of "
            "member files; give it once per file and several runs merge.",
        ),
    ] = None,
    annotations: Annotated[
        Path | None,
        typer.Option(
            "--annotations",
            help="Detection: the pool's COCO instances JSON (its images are the rows, its categories the classes); "
            "each MEMBER is then a detector's COCO results JSON (image_id, category_id, bbox, score), rendered into "
            "per-class centre maps and scored per location, an image scoring the maximum.",
        ),
    ] = None,
    stride: Annotated[
        float | None, typer.Option("--stride", help="With --annotations: pixels per centre-map cell (default 4).")
    ] = None,
    members: Annotated[
        list[Path] | None,
        typer.Argument(
            metavar="MEMBER...",
            help="Ensemble members (checkpoints), probabilities or logits (--logits): an [N, C] .npy or .npz per "
            "member, a directory of them (in natural name order: epoch_2 before epoch_10), a Parquet file (one list "
            "column per member) or Zarr (an array, or a group of one array per member). Members are in the order "
            "given: forgetting and dyn_unc follow it.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Score ensemble member predictions and write the most informative subset."""
    from subsetsearch.pipeline.score import ScoreRequest, score_files, summary

    if annotations is not None:
        from subsetsearch.pipeline.score_boxes import BoxScoreRequest, score_box_files

        BoxScoreRequest.refuse(
            {
                "--labels": labels is not None,
                "--labels-column": labels_column is not None,
                "--logits": logits,
                "--skip-disagreement": skip_disagreement,
                "--stats": bool(saved_stats),
                "--window": window is not None,
                "--balance": balance != "none",
            }
        )
        box_request = BoxScoreRequest(
            annotations=annotations,
            members=tuple(members or ()),
            function=function,
            budget=budget,
            out=out,
            scores_out=scores_out,
            exclude=exclude,
            skip_top=skip_top,
            seed=seed,
            state=state,
            stride=4.0 if stride is None else stride,
            coverage=coverage,
            prune_hardest=prune_hardest,
            direction=direction,
        )
        with _MemberProgress() as advance:
            result = score_box_files(box_request, on_progress=advance)
    else:
        if stride is not None:
            raise InputError("--stride sets the centre maps of --annotations; give --annotations or drop it")
        request = ScoreRequest(
            function=function,
            budget=budget,
            out=out,
            members=tuple(members or ()),
            labels=labels,
            labels_column=labels_column,
            logits=logits,
            exclude=exclude,
            skip_top=skip_top,
            skip_disagreement=skip_disagreement,
            seed=seed,
            scores_out=scores_out,
            state=state,
            saved_stats=tuple(saved_stats or ()),
            window=window,
            balance=balance,
            coverage=coverage,
            prune_hardest=prune_hardest,
            direction=direction,
        )
        with _MemberProgress() as advance:
            result = score_files(request, on_progress=advance)
    typer.echo(summary(result, function))
    typer.echo(f"wrote {out}" + (f" and {scores_out}" if scores_out else ""))


_EXECUTOR = typer.Option(
    "--executor",
    "-x",
    help="Where members are trained and scored: local (in this process) or ray; overrides the config's executor.",
)
_RAY_ADDRESS = typer.Option(
    "--ray-address", help="An existing Ray cluster (auto, ray://head:10001); without it --executor ray starts one."
)


@app.command()
def run(
    config: Annotated[Path, typer.Argument(metavar="CONFIG.yaml", help="The search to run (see configs/demo.yaml).")],
    run_dir: Annotated[
        Path | None,
        typer.Option("--run-dir", "-o", help="Run directory (default: run_dir in the config, else runs/<name>)."),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines; only the summary.")] = False,
    executor: Annotated[str | None, _EXECUTOR] = None,
    ray_address: Annotated[str | None, _RAY_ADDRESS] = None,
) -> None:
    """Run a whole subset search; on an existing run directory, resume it."""
    require_extra("train", what="subsetsearch run")
    from subsetsearch.pipeline.config import load_config, with_executor
    from subsetsearch.pipeline.run import run_config, summary

    settings = with_executor(load_config(config), executor, ray_address)
    result = _with_progress(quiet, lambda reporter: run_config(settings, run_dir, reporter))
    typer.echo(summary(result, settings))


def _with_progress(quiet: bool, work):
    """Run ``work(reporter)`` with progress on stderr; Ctrl-C ends with exit 130 and a line on how to resume."""
    from subsetsearch.internal.malloc import tune_malloc

    tune_malloc()  # before torch is imported
    from subsetsearch.pipeline.progress import Reporter

    try:
        with Reporter(quiet=quiet) as reporter:
            return work(reporter)
    except KeyboardInterrupt:
        typer.echo("subsetsearch: interrupted; run the same command again to resume", err=True)
        raise typer.Exit(130) from None


@app.command()
def study(
    config: Annotated[
        Path, typer.Argument(metavar="STUDY.yaml", help="One of the paper's studies (see configs/studies/).")
    ],
    study_dir: Annotated[
        Path | None,
        typer.Option("--study-dir", "-o", help="Study directory (default: study_dir in the config, else runs/<name>)."),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines; only the table.")] = False,
    executor: Annotated[str | None, _EXECUTOR] = None,
    ray_address: Annotated[str | None, _RAY_ADDRESS] = None,
) -> None:
    """Run every cell of a study (resumable), then write its table, figure and report."""
    require_extra("train", what="subsetsearch study")
    from subsetsearch.pipeline.report import build_report
    from subsetsearch.pipeline.study import load_study_config, run_study

    settings = load_study_config(config, executor, ray_address)
    folder = _with_progress(quiet, lambda reporter: run_study(settings, study_dir, reporter))
    typer.echo(build_report(folder).summary)


@app.command()
def report(
    run_dir: Annotated[
        Path | None,
        typer.Argument(metavar="[RUN_DIR]", help="A run directory (subsetsearch run) or study directory."),
    ] = None,
    scores: Annotated[
        Path | None,
        typer.Option(
            "--scores",
            help="Instead of RUN_DIR: a gallery of a scores table (index and scores: score --scores-out).",
        ),
    ] = None,
    images: Annotated[
        Path | None,
        typer.Option("--images", help="With --scores: the images, an image folder or an .npy / .npz (x, y)."),
    ] = None,
    subset: Annotated[
        Path | None, typer.Option("--subset", help="With --scores: the chosen rows (score -o), to show the cut.")
    ] = None,
    labels: Annotated[
        Path | None,
        typer.Option("--labels", help="With --scores: [N] integer classes (an image folder gives its own)."),
    ] = None,
    function: Annotated[
        str | None, typer.Option("--function", help="With --scores: the column of scores (default: score).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="With --scores: the gallery's directory (new, or ours).")
    ] = None,
) -> None:
    """Write RUN_DIR/report/: PNG figures and one self-contained report.html (finished or partial runs).

    With --scores and --images instead: a gallery page of any selection's scores, in --out.
    """
    require_extra("train", what="subsetsearch report", only=REPORT_MODULES)
    gallery = {"--images": images, "--subset": subset, "--labels": labels, "--function": function, "--out": out}
    if scores is None:
        given = [option for option, value in gallery.items() if value is not None]
        if given:
            raise InputError(f"{given[0]} belongs to a gallery of scores; give --scores FILE with it")
        if run_dir is None:
            raise InputError("give a RUN_DIR to report, or --scores FILE --images IMAGES --out DIR for a gallery")
        from subsetsearch.pipeline.report import build_report

        typer.echo(build_report(run_dir).summary)
        return
    if run_dir is not None:
        raise InputError(f"give RUN_DIR '{run_dir}' or --scores, not both")
    if images is None or out is None:
        missing = "--images" if images is None else "--out"
        raise InputError(f"--scores needs {missing}: the images the scores are of, and a directory for the page")
    from subsetsearch.pipeline.gallery import GalleryRequest, gallery_page

    request = GalleryRequest(scores, images, out, subset=subset, labels=labels, function=function)
    typer.echo(gallery_page(request).summary)


@app.command()
def schema(
    study: Annotated[
        bool, typer.Option("--study", help="The schema of a study config (subsetsearch study) instead.")
    ] = False,
) -> None:
    """Print the JSON Schema of the run config (or --study config), for editors that validate YAML."""
    import json

    if study:
        from subsetsearch.pipeline.study import study_schema as make_schema
    else:
        from subsetsearch.pipeline.config import config_schema as make_schema
    typer.echo(json.dumps(make_schema(), indent=2, ensure_ascii=False))


class _MemberProgress:
    """A progress bar over (member, shard) pairs on a terminal's stderr; nothing in a pipe."""

    def __init__(self) -> None:
        self.progress = None

    def __enter__(self):
        if not sys.stderr.isatty():
            return lambda done, total: None
        from rich.console import Console
        from rich.progress import Progress

        self.progress = Progress(console=Console(stderr=True), transient=True)
        self.progress.start()
        task = self.progress.add_task("scoring members", total=None)
        return lambda done, total: self.progress.update(task, completed=done, total=total)

    def __exit__(self, *exc_info) -> None:
        if self.progress is not None:
            self.progress.stop()


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A SubsetsearchWarning as one line on stderr; any other warning as Python shows it."""
    if issubclass(category, SubsetsearchWarning):
        print(f"subsetsearch: warning: {message}", file=sys.stderr)
    else:
        _show_warning(message, category, filename, lineno, file, line)


_show_warning = warnings.showwarning


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app; bad input becomes one line on stderr and exit code 2; a warning, one
    line on stderr."""
    warnings.showwarning = _one_line_warning
    try:
        app(args=argv, prog_name="subsetsearch")  # standalone: ends in SystemExit
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except InputError as error:
        print(f"subsetsearch: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except MissingExtraError as error:
        print(f"subsetsearch: error: {error}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as error:  # an optional package imported deep inside: name its extra
        extra = extra_of(error.name or "")
        if extra is None:
            raise
        missing = (error.name or "").partition(".")[0]
        print(f"subsetsearch: error: {missing} is not installed here; run: {install_line(extra)}", file=sys.stderr)
        return 1
    except ExecutorError as error:  # a worker lost too often, or Ray missing: one line
        print(f"subsetsearch: error: {error}", file=sys.stderr)
        return 1
    except OSError as error:  # disk full, permission denied: still one line, no traceback
        print(f"subsetsearch: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
