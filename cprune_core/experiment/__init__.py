"""Experiments built on the engine: the paper's comparison as one reproducible table (grid, report); does
centrality predict importance (importance: the report of ablation.py's analysis)."""
from .grid import (COMPARED_CRITERIA, DEFAULT_IMAGE_SIZE, FEW_SHOT, KEEP_RATIOS, REGIMES, TAU_SWEEP, Grid,
                   PlannedRun, Regime, offline_regimes, paper_table_grid, plan_runs, row_for, run_plan)
from .report import markdown_table, paired_interval, plot_accuracy_vs_macs, summarise, verdict, write_report

__all__ = ["COMPARED_CRITERIA", "DEFAULT_IMAGE_SIZE", "FEW_SHOT", "KEEP_RATIOS", "REGIMES", "TAU_SWEEP", "Grid",
           "PlannedRun", "Regime", "offline_regimes", "paper_table_grid", "plan_runs", "row_for", "run_plan",
           "markdown_table", "paired_interval", "plot_accuracy_vs_macs", "summarise", "verdict", "write_report"]
