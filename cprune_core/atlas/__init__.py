"""The premise, layer by layer: does centrality predict importance in every prunable layer of a network?

With heads trained on the frozen backbone (one, then more from other seeds), each layer's task (``measure_layer``)
measures, with no retraining: the exact ablation effect of a seeded sample of its neurons on every validation
image (the ablation package's ``PooledAblator`` / ``ForwardAblator``), its split-half reliability, and each
criterion's Spearman rho with it (an interval resampling images and neurons, a permutation p-value with its Monte
Carlo error); group ablation keeping a fraction of the neurons by each criterion, ranked among random kept sets;
and the redundancy and coverage of every kept set (``geometry.kept_set_geometry``). ``run_atlas`` runs
the layers in network order, carrying the validation images through the network once (``BlockInputs``),
on an executor (this process, or one Ray task per layer), recording each layer as it ends
(``AtlasRecords``, by the layer's key: a run resumes). ``AtlasResult`` holds the whole atlas, the tests
Holm-corrected over layers (``Family``), and its JSON form; ``pooled_tests`` gives the primary tests over every
layer of one or more atlases; ``atlas_sentences`` says what they show, and ``report.write_atlas_report`` writes one
atlas or one per backbone as atlas.md, atlas.csv and a picture per backbone (a submodule: it needs pandas and
matplotlib).

Validation split only. Long steps take ``progress(done, total, message)`` (done, total: layers) and a
``stop`` event; a set ``stop`` raises ``StopRequested``.
"""
from ..lazy import attach

# Imported when first used (cprune_core.lazy): a light module of the package (its settings) costs no torch.
__getattr__, __dir__, __all__ = attach(__name__, {
    "blocks": ("BlockInputs", "chain_steps"),
    "layer": ("LayerAtlas", "LayerTask"),
    "measure": ("measure_layer",),
    "pooled": ("PooledTests", "pooled_tests"),
    "records": ("AtlasRecords", "RecordedAtlas", "configuration_key", "layer_key"),
    "result": ("TESTS", "TIED_FLAG", "AtlasResult", "Family"),
    "run": ("PlannedLayer", "head_fingerprint", "plan_layers", "run_atlas", "validation_subset"),
    "sentence": ("atlas_sentences", "geometry_gaps", "layers_sentence", "pooled_sentence", "why_sentence"),
    "settings": ("DEFAULT_SAMPLE", "QUICK_LAYERS", "SEQUENTIAL_HITS", "AtlasSettings"),
    "significance": ("ALPHA", "PERMUTATIONS", "VERDICTS", "verdict"),
})
