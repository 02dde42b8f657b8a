"""Experiments built on the engine: the paper's comparison as one reproducible table, run in this
process or on a Ray cluster (grid, executors, report); does centrality predict importance
(importance_report: the report of the ablation package's analysis; the atlas package writes its own)."""
from ..lazy import attach

# Imported when first used (cprune_core.lazy): a light module of the package (its settings) costs no torch.
__getattr__, __dir__, __all__ = attach(__name__, {
    "executors": ("EXECUTORS", "Executor", "LocalExecutor", "Outcome", "RayExecutor"),
    "grid": ("Grid", "GridProgress", "PlannedRun", "leaders_first", "paper_table_grid", "plan_runs", "row_for", "run_key",
        "run_plan"),
    "settings": ("COMPARED_CRITERIA", "DEFAULT_EPOCHS", "DEFAULT_IMAGE_SIZE", "FEW_SHOT", "KEEP_RATIOS", "QUICK_EPOCHS",
        "QUICK_SEEDS", "REGIMES", "TAU_SWEEP", "Regime", "offline_regimes"),
    "paper_table_report": ("markdown_table", "paired_interval", "plot_accuracy_vs_macs", "summarise", "verdict",
        "write_report"),
})
