"""Inference-only speed-ups that keep mmsegmentation's outputs: BN folding, channels_last,
Winograd 3x3 convs, autocast.

`optimize(model)` returns a copy for inference: every BatchNorm that follows a convolution is
folded into that convolution's weight and bias (y = (Wx - mu) * g / s + b  ==  (W * g/s) x + b'),
activations use channels_last memory, on CPU the wide 3x3 convs run by Winograd's F(4x4, 3x3)
(`dmnet.winograd`; F(5x5, 3x3) with fused transforms under `compile=True`), and `precision`
may select bf16/fp16 autocast. The copy
keeps the module tree (folded BNs become Identity), so `inspect()` still returns every
intermediate, but its state dict is no longer mmseg's: save the original model, not this one.
Equality with the original model is tested in tests/dmnet/test_fast.py; speed is measured by
`python -m dmnet.bench`. `keep_freed_memory()` is the process-wide part: large freed buffers
stay in the heap for the next forward pass instead of being page-faulted afresh, and large
tensors go on transparent huge pages.
"""

from __future__ import annotations

import copy
import ctypes
import os
import platform
from pathlib import Path

import torch
from torch import nn

from .backbone import BasicBlock, Bottleneck
from .heads import ConvModule
from .model import DMNet
from .winograd import COMPILED_TILE, TILE, WinogradConv2d, winograd_convs

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
# Compiled versions dynamo keeps of one function before it runs the rest eagerly (default 8). It
# counts them over every model in the process: one per model and input size, so two compiled
# models at ms+flip's six view sizes (12) ran some of their views eagerly.
RECOMPILE_LIMIT = 64


@torch.no_grad()
def fold_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A conv with bias equal to conv followed by bn in eval mode."""
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                      conv.padding, conv.dilation, conv.groups, bias=True,
                      device=conv.weight.device, dtype=conv.weight.dtype)
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (C_out,)
    fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused.bias.copy_((bias - bn.running_mean) * scale + bn.bias)
    return fused


def _fold_pairs(parent: nn.Module, pairs: list[tuple[str, str]]) -> None:
    for conv_name, bn_name in pairs:
        setattr(parent, conv_name, fold_bn(getattr(parent, conv_name), getattr(parent, bn_name)))
        setattr(parent, bn_name, nn.Identity())


def fold_all_bn(model: DMNet) -> None:
    """Fold, in place, every BN that directly follows a conv (all but each DCM's `norm`,
    which follows the dynamic depthwise conv and stays a BN)."""
    stem = model.backbone.stem
    for i in (0, 3, 6):
        stem[i] = fold_bn(stem[i], stem[i + 1])
        stem[i + 1] = nn.Identity()
    for m in model.modules():
        if isinstance(m, Bottleneck):
            _fold_pairs(m, [("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3")])
        elif isinstance(m, BasicBlock):
            _fold_pairs(m, [("conv1", "bn1"), ("conv2", "bn2")])
        elif isinstance(m, ConvModule):
            _fold_pairs(m, [("conv", "bn")])
        if isinstance(m, (BasicBlock, Bottleneck)) and m.downsample is not None:
            m.downsample[0] = fold_bn(m.downsample[0], m.downsample[1])
            m.downsample[1] = nn.Identity()


def optimize(model: DMNet, precision: str = "fp32", channels_last: bool = True,
             winograd: bool = True, compile: bool = False) -> DMNet:
    """An inference copy of `model`: BN folded, channels_last, Winograd 3x3 convs on CPU in fp32,
    optional bf16/fp16 autocast.

    Args:
        precision: "fp32" (outputs equal the original to float tolerance), "bf16" or "fp16"
            (autocast; fp16 only on CUDA). Outputs are returned as float32.
        channels_last: store activations NHWC, the layout oneDNN and cuDNN convolutions prefer.
        winograd: on a CPU model in fp32, run the wide 3x3 convs by F(4x4, 3x3) Winograd
            (`dmnet.winograd`; ~2x faster than oneDNN's AVX2 kernels, equal to a few 1e-6 of
            the output's scale).
            cuDNN picks Winograd itself; reduced precision keeps the direct convs, whose
            rounding the transforms would amplify.
        compile: also `torch.compile` (inductor, with weight freezing) the backbone, the
            auxiliary head's conv and the Winograd conv of DMHead's bottleneck (the head around
            it stays eager: `ConvModule.forward_concat` reads its inputs in place). The
            Winograd convs then use F(5x5, 3x3), the dilated ones F(4x4) where that needs
            fewer products for the input's size (`best_tile`), and apply the transforms
            elementwise, which inductor fuses with the tile gather and the crop
            (`winograd_conv3x3`, `COMPILED_TILE`): one 769x769 window of R-50-D8 at 0.57x of
            the plain model's time, against 0.65x eagerly (2-core AMD EPYC). The first call
            per input size compiles (R-50: 2.5-4 min on 2 CPU cores with an empty inductor
            cache, ~10 s with a warm one); worth it for fixed-size batch work, such as slide
            windows, not for a demo.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    if precision == "fp16" and model.device.type != "cuda":
        raise ValueError("fp16 autocast needs a CUDA device; use precision='bf16' on CPU")
    fast = copy.deepcopy(model).eval()
    fold_all_bn(fast)
    if winograd and precision == "fp32" and fast.device.type == "cpu":
        # Compiled, the dilated convs also keep F(4): it wins where F(5)'s tiles overshoot
        # their residue grids (`best_tile`); their F(4) filters cost R-50-D8 170 MB more.
        winograd_convs(fast, COMPILED_TILE, (TILE,)) if compile else winograd_convs(fast)
    if channels_last:
        fast = fast.to(memory_format=torch.channels_last)
    fast.channels_last = channels_last
    fast.autocast_dtype = PRECISIONS[precision]
    if compile:
        for p in fast.parameters():
            p.requires_grad_(False)  # freezing folds and prepacks weights: inference only
        options = {"freezing": True}
        dynamo_config = torch._dynamo.config
        dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, RECOMPILE_LIMIT)
        fast.backbone = torch.compile(fast.backbone, options=options, dynamic=False)
        fast.auxiliary_head.convs = torch.compile(fast.auxiliary_head.convs, options=options,
                                                  dynamic=False)
        for m in fast.modules():
            if isinstance(m, WinogradConv2d):
                m.elementwise = True  # transforms inductor fuses; eagerly they would be slower
        conv = fast.decode_head.bottleneck.conv
        if isinstance(conv, WinogradConv2d):
            conv.forward_concat = torch.compile(conv.forward_concat, dynamic=False)
    return fast


def cpu_supports_bf16() -> bool:
    """True when oneDNN has native bf16 kernels on this CPU (AVX-512 BF16 or AMX)."""
    mkldnn = torch.backends.mkldnn
    return bool(mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def fast_precision(device: torch.device) -> str:
    """The reduced precision worth using on a device: bf16 where it is native, else fp32."""
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_supports_bf16() else "fp32"


def keep_freed_memory(limit: int = 1 << 30) -> bool:
    """Let this process reuse the large buffers it frees instead of returning them to the system
    (glibc's malloc; elsewhere nothing happens and this returns False).

    glibc gives every block over 32 MiB its own mmap and unmaps it when freed, so each forward
    pass at a few hundred thousand pixels maps its large activations and Winograd tiles afresh
    and page-faults on every 4 KiB of them. Raising M_MMAP_THRESHOLD to `limit` serves those
    blocks from the heap, and raising M_TRIM_THRESHOLD keeps the freed heap for the next pass.
    Measured on a 2-core AMD EPYC (R-50-D8, one 769x769 window): the plain model 5.52 -> 4.42 s,
    `optimize()` 3.85 -> 2.94 s. Process-wide and for the rest of the process: its resident
    memory stays near its peak. The command-line tools call it (`dmnet.predict`,
    `dmnet.bench`, `training.evaluate`); the app does not, so that an idle server gives memory
    back.

    It also asks torch to put tensors of 2 MiB and more on transparent huge pages
    (`THP_MEM_ALLOC_ENABLE`, unless set: page-aligned and madvised, for kernels whose policy is
    "madvise"), fewer TLB misses in the large products: a window 2.90 -> 2.81 s (plain
    4.34 -> 4.31). torch reads the variable at its first CPU tensor, so call this before
    creating any (the tools' imports create none); `huge_pages_in_use()` says whether it took.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, limit) and mallopt(_M_TRIM_THRESHOLD, limit))


def huge_pages_in_use() -> bool:
    """Whether torch madvises large CPU tensors for transparent huge pages (`keep_freed_memory`):
    the memory map holding a fresh 4 MiB tensor has the flag "hg" (Linux's /proc/self/smaps)."""
    address = torch.empty(1 << 20).data_ptr()
    try:
        lines = Path("/proc/self/smaps").read_text().splitlines()
    except OSError:
        return False
    inside = False
    for line in lines:
        head = line.split()[0] if line.strip() else ""
        if "-" in head and not head.endswith(":"):  # a mapping's first line: start-end perms
            start, end = (int(a, 16) for a in head.split("-"))
            inside = start <= address < end
        elif inside and head == "VmFlags:":
            return "hg" in line.split()[1:]
    return False
