"""Devices, mixed precision and out-of-memory detection, apart from training (as timm/utils/cuda.py)."""
from __future__ import annotations

from contextlib import nullcontext

import torch

from .errors import ConfigError
from .ranges import DEVICES, choose

__all__ = ["DEVICES", "resolve_device", "describe_device", "Precision", "is_out_of_memory", "to_device"]



def resolve_device(name: str = "auto") -> torch.device:
    """"auto": CUDA, then Apple MPS, then CPU; otherwise the named device (checked to exist).

    "cuda" is whatever CUDA device torch sees as current: under Ray (or CUDA_VISIBLE_DEVICES)
    that is the GPU assigned to this process; CPrune never picks an index itself.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but no CUDA GPU is available; use 'auto' or 'cpu'.")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device 'mps' requested but Apple MPS is not available; use 'auto' or 'cpu'.")
    return torch.device(choose(name, DEVICES, "device"))


def describe_device(device: torch.device) -> str:
    """The device in words, e.g. "cuda (NVIDIA H100 80GB HBM3)" or "cpu (2 threads)" (torch's threads now)."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "mps":
        return "mps (Apple GPU)"
    threads = torch.get_num_threads()
    return f"cpu ({threads} thread{'s' if threads != 1 else ''})"


def is_out_of_memory(error: BaseException) -> bool:
    """CUDA's OutOfMemoryError, MPS's, or an allocation failing on the CPU (PyTorch's allocator, or a kernel
    library's own posix_memalign, as NNPACK's: errno 12, "Cannot allocate memory")."""
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    message = str(error)
    return isinstance(error, RuntimeError) and any(sign in message for sign in (
        "MPS backend out of memory", "DefaultCPUAllocator: can't allocate memory", "Cannot allocate memory"))


class Precision:
    """Mixed precision on CUDA (bf16 where supported, else fp16 with loss scaling); fp32 elsewhere."""

    def __init__(self, device: torch.device):
        self.device = device
        self.dtype = None
        if device.type == "cuda":
            self.dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler("cuda") if self.dtype == torch.float16 else None

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.dtype) if self.dtype else nullcontext()

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is None:
            loss.backward()
            optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(optimizer)
            self.scaler.update()


def to_device(batch, device: torch.device):
    """(inputs, labels) on ``device``; images channels-last on CUDA (faster convolutions with AMP)."""
    inputs, labels = batch
    non_blocking = device.type == "cuda"
    inputs = inputs.to(device, non_blocking=non_blocking)
    if device.type == "cuda" and inputs.ndim == 4:
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    return inputs, labels.to(device, non_blocking=non_blocking)
