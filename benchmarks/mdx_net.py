"""A random-weight MDX-Net for benchmarks: a TFC-TDF U-Net (KUIELab's MDX-Net layout, which UVR's MDX-Net models are
trained in) with the input and output of UVR-MDX-NET-Inst_HQ_3 (4 x 3072 bins x 256 frames; n_fft 6144) and about its
parameter count (16.7 M here, a 66.7 MB file; the real one is 66.8 MB), exported to ONNX as UVR ships them.

Only the shapes and the amount of arithmetic matter to a speed comparison: the same file goes to every tool.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

# Inst_HQ_3's UVR model data (models/mdx_models.json), compensate 1.0 so that tools which skip it agree
PARAMS = {"compensate": 1.0, "mdx_dim_f_set": 3072, "mdx_dim_t_set": 8, "mdx_n_fft_scale_set": 6144}


def _block(c_in: int, c_out: int, conv: type[nn.Module] = nn.Conv2d, **kw) -> nn.Sequential:
    return nn.Sequential(conv(c_in, c_out, **kw), nn.BatchNorm2d(c_out), nn.ReLU())


class TfcTdf(nn.Module):
    """l time-frequency convolutions, then a bottlenecked dense layer across the frequency axis, added back."""

    def __init__(self, c: int, layers: int, f: int, bn: int) -> None:
        super().__init__()
        self.tfc = nn.Sequential(*[_block(c, c, kernel_size=3, padding=1) for _ in range(layers)])
        self.tdf = nn.Sequential(
            nn.Linear(f, f // bn, bias=False),
            nn.BatchNorm2d(c),
            nn.ReLU(),
            nn.Linear(f // bn, f, bias=False),
            nn.BatchNorm2d(c),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.tfc(x)
        return x + self.tdf(x.transpose(-1, -2)).transpose(-1, -2)


class TfcTdfNet(nn.Module):
    """(batch, 4, dim_f, frames) -> (batch, 4, dim_f, frames): five levels down and up, skips multiplied in."""

    def __init__(self, dim_f: int = 3072, g: int = 48, levels: int = 5, layers: int = 3, bn: int = 8) -> None:
        super().__init__()
        self.first = _block(4, g, kernel_size=1)
        self.down, self.encode = nn.ModuleList(), nn.ModuleList()
        self.up, self.decode = nn.ModuleList(), nn.ModuleList()
        c, f = g, dim_f
        for _ in range(levels):
            self.encode.append(TfcTdf(c, layers, f, bn))
            self.down.append(_block(c, c + g, kernel_size=2, stride=2))
            c, f = c + g, f // 2
        self.bottleneck = TfcTdf(c, layers, f, bn)
        for _ in range(levels):
            self.up.append(_block(c, c - g, nn.ConvTranspose2d, kernel_size=2, stride=2))
            c, f = c - g, f * 2
            self.decode.append(TfcTdf(c, layers, f, bn))
        self.last = nn.Conv2d(g, 4, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first(x)
        skips = []
        for encode, down in zip(self.encode, self.down):
            x = encode(x)
            skips.append(x)
            x = down(x)
        x = self.bottleneck(x)
        for up, decode, skip in zip(self.up, self.decode, reversed(skips)):
            x = decode(up(x) * skip)
        return self.last(x)


def make_model(path: Path, seed: int = 0, frames: int = 256, **shape: int) -> Path:
    """Export a random TfcTdfNet (of `shape`, TfcTdfNet's arguments) to `path` (once) with a free batch axis, as
    UVR's files have."""
    if path.exists():
        return path
    torch.manual_seed(seed)
    net = TfcTdfNet(**shape).eval()
    for module in net.modules():  # trained-looking statistics, so activations neither vanish nor explode
        if isinstance(module, nn.BatchNorm2d):
            module.running_var.uniform_(0.5, 1.5)
    example = torch.randn(1, 4, shape.get("dim_f", PARAMS["mdx_dim_f_set"]), frames)
    tmp = path.with_name(path.name + ".part")
    torch.onnx.export(
        net,
        (example,),
        str(tmp),
        input_names=["input"],
        output_names=["output"],
        dynamic_axes={"input": {0: "batch_size"}, "output": {0: "batch_size"}},
        opset_version=17,
        dynamo=False,
    )
    tmp.replace(path)
    return path


def params_file(path: Path, primary_stem: str = "Instrumental", **changes: int) -> Path:
    """UVR's model data of the network, as --params reads it: PARAMS with `changes`."""
    path.write_text(json.dumps({**PARAMS, **changes, "primary_stem": primary_stem}))
    return path
