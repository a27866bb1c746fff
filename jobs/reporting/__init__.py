"""Training curves and run summaries from `<work_dir>/log.jsonl` (jobs/training/logs.py), and the demo's fusion
table files. Library code for `tsn plot` (jobs/plot.py) and `tsn demo`."""
from jobs.reporting.curves import plot_curves
from jobs.reporting.runs import ReportError, Run, TrainRecord, ValRecord, find_log, read_run
from jobs.reporting.summary import RunSummary, format_summary, summarize
from jobs.reporting.tables import fusion_markdown, write_fusion

__all__ = ["ReportError", "Run", "RunSummary", "TrainRecord", "ValRecord", "find_log", "format_summary",
           "fusion_markdown", "plot_curves", "read_run", "summarize", "write_fusion"]
