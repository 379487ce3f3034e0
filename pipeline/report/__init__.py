"""`gbpipe report`, `runs` and `report --compare`: a run read as a whole (runview), the report and its
sections (build, sections, data_section, drift_section, importance_section, stage_sections, stage_files,
evaluation), the page model rendered as HTML, JSON and Markdown (page), plots (plots), comparisons of
runs (compare), an experiment's list of runs (run_list) and MLflow logging (tracking)."""

from pipeline.core.lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "build_report": ".build",
        "write_report": ".build",
        "headline_text": ".build",
        "compare_runs": ".compare",
        "write_comparison": ".compare",
        "list_runs": ".run_list",
    },
)
