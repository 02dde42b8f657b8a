"""The premise, layer by layer: does centrality predict importance in every prunable layer of a network?

With one head trained once on the frozen backbone, each layer's task (``measure_layer``) measures, with no
retraining: the exact ablation effect of a seeded sample of its neurons (the ablation package's
``PooledAblator`` / ``ForwardAblator``) and each criterion's Spearman rho with it (bootstrap interval,
permutation p-value); group ablation keeping a fraction of the neurons by each criterion (random: one row
per seed); and the redundancy and coverage of every kept set (``kept_set_geometry``). ``run_atlas`` runs
the layers in network order, carrying the validation images through the network once (``BlockInputs``),
on an executor (this process, or one Ray task per layer), recording each layer as it ends
(``AtlasRecords``, by the layer's key: a run resumes). ``AtlasResult`` holds the whole atlas, the tests
Holm-corrected over layers (``Family``), and its JSON form; ``atlas_sentences`` says what it shows, and
``report.write_atlas_report`` writes it as atlas.md, atlas.csv and atlas.png (a submodule: it needs pandas
and matplotlib).

Validation split only. Long steps take ``progress(done, total, message)`` (done, total: layers) and a
``stop`` event; a set ``stop`` raises ``StopRequested``.
"""
from .blocks import BlockInputs, chain_steps
from .geometry import KeptSetCurves, KeptSetGeometry, group_curves, group_geometry, group_similarities, kept_set_geometry
from .layer import LayerAtlas, LayerTask, measure_layer
from .records import AtlasRecords, RecordedAtlas, configuration_key, layer_key
from .result import TESTS, AtlasResult, Family
from .run import PlannedLayer, head_fingerprint, plan_layers, run_atlas, validation_subset
from .sentence import atlas_sentences, finding_sentence, geometry_gaps, why_sentence
from .settings import DEFAULT_SAMPLE, QUICK_LAYERS, AtlasSettings
from .significance import ALPHA, PERMUTATIONS, holm, prediction_p, rho_permutation_p, verdict

__all__ = ["BlockInputs", "chain_steps", "KeptSetGeometry", "kept_set_geometry", "group_similarities",
           "group_geometry", "KeptSetCurves", "group_curves", "LayerAtlas", "LayerTask", "measure_layer", "AtlasRecords", "RecordedAtlas",
           "configuration_key", "layer_key", "TESTS", "AtlasResult", "Family", "PlannedLayer", "head_fingerprint",
           "plan_layers", "run_atlas", "validation_subset", "atlas_sentences", "finding_sentence", "geometry_gaps",
           "why_sentence", "DEFAULT_SAMPLE", "QUICK_LAYERS", "AtlasSettings", "ALPHA", "PERMUTATIONS", "holm",
           "prediction_p", "rho_permutation_p", "verdict"]
