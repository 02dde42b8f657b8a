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
from .blocks import BlockInputs, chain_steps
from .layer import LayerAtlas, LayerTask
from .measure import measure_layer
from .pooled import PooledTests, pooled_tests
from .records import AtlasRecords, RecordedAtlas, configuration_key, layer_key
from .result import TESTS, TIED_FLAG, AtlasResult, Family
from .run import PlannedLayer, head_fingerprint, plan_layers, run_atlas, validation_subset
from .sentence import atlas_sentences, geometry_gaps, layers_sentence, pooled_sentence, why_sentence
from .settings import DEFAULT_SAMPLE, QUICK_LAYERS, SEQUENTIAL_HITS, AtlasSettings
from .significance import ALPHA, PERMUTATIONS, VERDICTS, verdict

__all__ = ["BlockInputs", "chain_steps", "LayerAtlas", "LayerTask", "measure_layer", "PooledTests",
           "pooled_tests", "AtlasRecords", "RecordedAtlas", "configuration_key", "layer_key", "TESTS", "TIED_FLAG",
           "AtlasResult", "Family", "PlannedLayer", "head_fingerprint", "plan_layers", "run_atlas", "validation_subset",
           "atlas_sentences", "pooled_sentence", "layers_sentence", "geometry_gaps", "why_sentence", "DEFAULT_SAMPLE",
           "QUICK_LAYERS", "SEQUENTIAL_HITS", "AtlasSettings", "ALPHA", "PERMUTATIONS", "VERDICTS", "verdict"]
