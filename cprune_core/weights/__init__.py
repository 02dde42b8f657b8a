"""Any model's weights, read safely: ``.safetensors``, ``.onnx``, PyTorch state dicts, and folders of them (a
Hugging Face checkpoint's index and shards).

``open_weights_file`` lists a model's layers (its float tensors of rank 2 to 5) from metadata, each file's
once, and reads a layer's values on demand from its own bytes; ``check_stored_tensors`` is the one check,
before any value is read, that every reader of a file (this package, ``registry.read_state_dict``,
``checkpoint.load_model``) applies to its tensors: dense, with values, within budget, no more elements than
stored bytes. ``find_models`` lists the models under a server's model folders.
"""
from ..lazy import attach

# Imported when first used (cprune_core.lazy): a light module of the package (its budget) costs no torch.
__getattr__, __dir__, __all__ = attach(__name__, {
    "budget": ("DEFAULT_BUDGET", "FLOAT_DTYPES", "LOCAL_BUDGET", "MAX_IN_MEMORY_BYTES", "StoredTensor",
        "WeightsBudget", "check_stored_tensors", "describe_tensor"),
    "file": ("WeightLayer", "WeightsFile", "open_weights_file", "read_weights_file"),
    "folders": ("find_models",),
    "formats": ("EXTENSIONS", "FORMATS", "detect_format"),
    "names": ("natural_key", "printable"),
})
