"""Experiments built on the engine: the paper's comparison as one reproducible table, run in this
process or on a Ray cluster (grid, executors, report); does centrality predict importance
(importance_report: the report of the ablation package's analysis), in every layer (atlas_report: the
report of the atlas package's)."""
from .executors import EXECUTORS, Executor, LocalExecutor, Outcome, RayExecutor
from .grid import (COMPARED_CRITERIA, DEFAULT_EPOCHS, DEFAULT_IMAGE_SIZE, FEW_SHOT, KEEP_RATIOS, QUICK_EPOCHS,
                   QUICK_SEEDS, REGIMES, TAU_SWEEP, Grid, GridProgress, PlannedRun, Regime, leaders_first,
                   offline_regimes, paper_table_grid, plan_runs, row_for, run_key, run_plan)
from .paper_table_report import markdown_table, paired_interval, plot_accuracy_vs_macs, summarise, verdict, write_report

__all__ = ["COMPARED_CRITERIA", "DEFAULT_EPOCHS", "DEFAULT_IMAGE_SIZE", "FEW_SHOT", "KEEP_RATIOS", "QUICK_EPOCHS",
           "QUICK_SEEDS", "REGIMES", "TAU_SWEEP", "Grid", "GridProgress", "PlannedRun", "Regime", "leaders_first",
           "offline_regimes", "paper_table_grid", "plan_runs", "row_for", "run_key", "run_plan", "EXECUTORS", "Executor",
           "LocalExecutor", "Outcome", "RayExecutor", "markdown_table", "paired_interval", "plot_accuracy_vs_macs",
           "summarise", "verdict", "write_report"]
