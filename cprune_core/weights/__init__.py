"""Weights files of any origin: ``.safetensors``, ``.onnx`` and PyTorch state dicts, read safely.

``open_weights_file`` lists a file's layers (its float tensors of rank 2 and 4) from metadata and
reads a layer's values on demand; ``check_stored_tensors`` is the one check, before any value is
read, that every reader of a file (this package, ``registry.read_state_dict``, ``checkpoint.load_model``)
applies to its tensors: dense, with values, within budget, no more elements than stored bytes.
"""
from .budget import DEFAULT_BUDGET, FLOAT_DTYPES, StoredTensor, WeightsBudget, check_stored_tensors, describe_tensor
from .file import (EXTENSIONS, FORMATS, WeightLayer, WeightsFile, detect_format, open_weights_file,
                   read_weights_file)

__all__ = ["DEFAULT_BUDGET", "FLOAT_DTYPES", "StoredTensor", "WeightsBudget", "check_stored_tensors", "describe_tensor",
           "EXTENSIONS", "FORMATS", "WeightLayer", "WeightsFile", "detect_format", "open_weights_file",
           "read_weights_file"]
