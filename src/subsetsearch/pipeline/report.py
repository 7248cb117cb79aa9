"""``subsetsearch report DIR``: the pages of a run directory or a study directory
(:mod:`subsetsearch.report.pages` composes them; this module only tells the two apart and reads the
study's config)."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from subsetsearch.errors import InputError
from subsetsearch.report.pages import ReportResult, run_page, study_page
from subsetsearch.rundir import StudyLayout, directory_kind


def build_report(path: str | Path) -> ReportResult:
    """Write ``path/report/`` for a run directory or a study directory; InputError if it is neither."""
    path = Path(path)
    study = StudyLayout(path)
    kind = directory_kind(path)
    if kind == "study" and study.config.is_file():
        import yaml

        from subsetsearch.pipeline.study import StudyConfig

        try:
            config = StudyConfig.model_validate(yaml.safe_load(study.config.read_text()))
        except (yaml.YAMLError, ValidationError):
            raise InputError(
                f"'{study.config}' is not a study config `subsetsearch study` wrote; rerun the study to rewrite it"
            ) from None
        return study_page(
            path,
            study=config.study,
            name=config.name,
            trials=config.trials,
            cells=list(config.cells),
            config=config.model_dump(mode="json"),
        )
    if kind != "run":
        raise InputError(
            f"'{path}' is neither a run directory (config.yaml) nor a study directory (study.yaml); "
            "give the folder that `subsetsearch run` or `subsetsearch study` wrote"
        )
    return run_page(path)
