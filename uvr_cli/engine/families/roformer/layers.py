"""What BS-RoFormer and Mel-Band RoFormer share: the STFT, the band split, the axial transformer over time and bands,
the mask estimators, and the network skeleton that joins them.

Attribute names and module indices mirror MSST's `models/bs_roformer` (ZFTurbo/Music-Source-Separation-Training),
so that `state_dict` keys and shapes are exactly those of community checkpoints and `load_state_dict(strict=True)`
takes them as they are. Where MSST has a training-only module (dropout, einops rearrangement) at an index, an
`nn.Identity` keeps the index of the next module.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from uvr_cli.errors import ModelError

# MSST settings that change nothing in inference: dropout, attention kernels, gradient checkpointing, training losses
INFERENCE_NEUTRAL = frozenset(
    {
        "attn_dropout",
        "ff_dropout",
        "flash_attn",
        "sage_attention",
        "use_torch_checkpoint",
        "dim_freqs_in",
        "multi_stft_resolution_loss_weight",
        "multi_stft_resolutions_window_sizes",
        "multi_stft_hop_size",
        "multi_stft_normalized",
        "multi_stft_window_fn",
    }
)
FF_MULT = 4  # MSST's FeedForward width factor; its networks do not expose it
ROTARY_THETA = 10000.0
LINEAR_ATTENTION_SCALE = 8.0  # MSST's LinearAttention: softmax(q k^T * 8) after L2-normalising q and k


def mul_into(a: Tensor, b: Tensor | float) -> Tensor:
    """a * b written over `a`, a temporary of the caller's (no fresh activation to fault in), unless the product
    promotes to another dtype (autocast's mixed dtypes): the same arithmetic either way."""
    return a.mul_(b) if torch.result_type(a, b) == a.dtype else a * b


def add_into(a: Tensor, b: Tensor) -> Tensor:
    """a + b written over `a` (as `mul_into`); MSST's b + a, since floating-point addition commutes."""
    return a.add_(b) if torch.result_type(a, b) == a.dtype else a + b


def check_settings(network: str, extra: Mapping[str, object], stft_window_fn: object, use_pope: bool) -> None:
    """Accept the config keys that do not change inference; any other unknown key is an error naming it, and so
    are the two MSST settings that uvr does not run (no known checkpoint uses them)."""
    unknown = sorted(set(extra) - INFERENCE_NEUTRAL)
    if unknown:
        raise ModelError(f"{network}: unknown model setting {', '.join(unknown)} in the model's config")
    if stft_window_fn is not None:
        raise ModelError(f"{network}: only the Hann window is supported (stft_window_fn must be unset)")
    if use_pope:
        raise ModelError(f"{network}: PoPE position embeddings (use_pope) are not supported")


class RMSNorm(nn.Module):
    """x / ||x|| * sqrt(dim) * gamma (F.normalize's eps 1e-12, no mean); key ``gamma``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.scale = dim**0.5
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return mul_into(mul_into(F.normalize(x, dim=-1), self.scale), self.gamma)


class Gelu(nn.Module):
    """The exact GELU of nn.GELU, over its input's memory (the Linear's fresh output before it)."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.ops.aten.gelu_(x)


class FeedForward(nn.Module):
    """RMSNorm -> Linear(dim, 4 dim) -> exact GELU -> Linear(4 dim, dim); keys ``net.0``, ``net.1``, ``net.4``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        inner = dim * FF_MULT
        self.net = nn.Sequential(
            RMSNorm(dim), nn.Linear(dim, inner), Gelu(), nn.Identity(), nn.Linear(inner, dim), nn.Identity()
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class RotaryEmbedding(nn.Module):
    """Rotary positions over the sequence axis (-2), as rotary-embedding-torch applies them with its defaults.

    Position p turns each interleaved pair (2i, 2i+1) of a head's features by the angle p * freqs[i]. ``freqs``
    is a parameter that is never trained, so checkpoints store it under every attention that shares this module.
    The rotation runs in float32 with autocast off and returns the input's dtype. It computes rotary-embedding-
    torch's x cos + rotate_half(x) sin to the bit, in two fresh tensors instead of five: rotate_half's negation
    moves into the sine (-a * s == a * -s exactly) and the products are summed in place.
    """

    def __init__(self, dim_head: int) -> None:
        super().__init__()
        freqs = 1.0 / ROTARY_THETA ** (torch.arange(0, dim_head, 2).float() / dim_head)
        self.freqs = nn.Parameter(freqs, requires_grad=False)

    def forward(self, t: Tensor) -> Tensor:
        with torch.autocast(t.device.type, enabled=False):
            positions = torch.arange(t.shape[-2], device=t.device, dtype=torch.float32)
            angles = (positions[:, None] * self.freqs.float()).repeat_interleave(2, dim=-1)
            signs = torch.tensor([-1.0, 1.0], device=t.device).repeat(angles.shape[-1] // 2)
            x = t.float()
            swapped = x.unflatten(-1, (-1, 2)).flip(-1).flatten(-2)  # (x0, x1) -> (x1, x0), a fresh tensor
            rotated = (x * angles.cos()).add_(swapped.mul_(angles.sin() * signs))  # (x0, x1) -> (-x1, x0) times sin
            return rotated.to(t.dtype)


class Attention(nn.Module):
    """Pre-norm multi-head softmax attention with rotary positions and a sigmoid gate per head.

    Keys: ``norm.gamma``, ``to_qkv.weight`` (channels ordered q/k/v, then head, then feature), ``to_gates.*``,
    ``to_out.0.weight`` and the shared ``rotary_embed.freqs``; ``to_qkv.bias``/``to_out.0.bias`` only when a
    checkpoint shares one bias among all attentions (``use_shared_bias``).
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        dim_head: int,
        rotary_embed: RotaryEmbedding,
        shared_biases: tuple[nn.Parameter, nn.Parameter] | None,
    ) -> None:
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.norm = RMSNorm(dim)
        self.to_qkv = nn.Linear(dim, inner * 3, bias=False)
        self.to_gates = nn.Linear(dim, heads)
        self.to_out = nn.Sequential(nn.Linear(inner, dim, bias=False))
        if shared_biases is not None:
            self.to_qkv.bias, self.to_out[0].bias = shared_biases
        self.rotary_embed = rotary_embed

    def forward(self, x: Tensor) -> Tensor:
        batch, length, _ = x.shape
        x = self.norm(x)
        q, k, v = self.to_qkv(x).unflatten(-1, (3, self.heads, -1)).permute(2, 0, 3, 1, 4)  # 3 x (b, h, n, d)
        out = F.scaled_dot_product_attention(self.rotary_embed(q), self.rotary_embed(k), v)
        out = mul_into(out, self.to_gates(x).transpose(1, 2).unsqueeze(-1).sigmoid())
        return self.to_out(out.transpose(1, 2).reshape(batch, length, -1))


class LinearAttention(nn.Module):
    """Cross-covariance attention (El-Nouby et al. 2021): heads attend between features, not positions.

    Keys: ``norm.gamma``, ``to_qkv.0.weight``, ``temperature`` [heads, 1, 1], ``to_out.1.weight``.
    """

    def __init__(self, dim: int, heads: int, dim_head: int) -> None:
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.norm = RMSNorm(dim)
        self.to_qkv = nn.Sequential(nn.Linear(dim, inner * 3, bias=False))
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.to_out = nn.Sequential(nn.Identity(), nn.Linear(inner, dim, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        batch, length, _ = x.shape
        x = self.norm(x)
        q, k, v = self.to_qkv(x).unflatten(-1, (3, self.heads, -1)).permute(2, 0, 3, 4, 1)  # 3 x (b, h, d, n)
        q = F.normalize(q, dim=-1) * self.temperature.exp()
        # the factor 8 as MSST applies it: folded into q against SDPA's default 1/sqrt(n), rounding as MSST does
        q = q * (LINEAR_ATTENTION_SCALE / q.shape[-1] ** -0.5)
        out = F.scaled_dot_product_attention(q, F.normalize(k, dim=-1), v)
        return self.to_out(out.permute(0, 3, 1, 2).reshape(batch, length, -1))


class Transformer(nn.Module):
    """Residual (attention, feed-forward) pairs at ``layers.{l}.0``/``.1``, then an RMSNorm ``norm`` or nothing."""

    def __init__(self, dim: int, attentions: Iterable[nn.Module], norm_output: bool) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.ModuleList([attention, FeedForward(dim)]) for attention in attentions)
        self.norm: nn.Module = RMSNorm(dim) if norm_output else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        for attention, feed_forward in cast("Iterable[Sequence[nn.Module]]", self.layers):
            x = add_into(attention(x), x)
            x = add_into(feed_forward(x), x)
        return self.norm(x)


class AxialTransformer(nn.ModuleList):
    """The trunk: ``depth`` blocks ``layers.{i}``, each [linear transformer over all (frame, band) positions,]
    time transformer over frames within each band, band transformer over bands within each frame.

    One rotary module serves every time attention and another every band attention. With ``skip_connection``
    each block's input also gets the sum of all earlier blocks' outputs (MSST's ``store``).
    """

    def __init__(
        self,
        *,
        dim: int,
        depth: int,
        heads: int,
        dim_head: int,
        time_depth: int,
        freq_depth: int,
        linear_depth: int,
        norm_output: bool,
        skip_connection: bool,
        shared_biases: tuple[nn.Parameter, nn.Parameter] | None,
    ) -> None:
        time_rotary, freq_rotary = RotaryEmbedding(dim_head), RotaryEmbedding(dim_head)

        def softmax_transformer(count: int, rotary: RotaryEmbedding) -> Transformer:
            attentions = (Attention(dim, heads, dim_head, rotary, shared_biases) for _ in range(count))
            return Transformer(dim, attentions, norm_output)

        blocks = []
        for _ in range(depth):
            block = [softmax_transformer(time_depth, time_rotary), softmax_transformer(freq_depth, freq_rotary)]
            if linear_depth > 0:
                linear = (LinearAttention(dim, heads, dim_head) for _ in range(linear_depth))
                block.insert(0, Transformer(dim, linear, norm_output))
            blocks.append(nn.ModuleList(block))
        super().__init__(blocks)
        self.skip_connection = skip_connection

    def forward(self, x: Tensor) -> Tensor:
        """(batch, frames, bands, dim) -> the same shape."""
        batch, frames, bands, dim = x.shape
        outputs: list[Tensor] = []
        for block in cast("Iterable[Sequence[nn.Module]]", self):
            *linear, time, freq = block
            if linear:
                x = linear[0](x.reshape(batch, frames * bands, dim)).reshape(batch, frames, bands, dim)
            if self.skip_connection:
                for earlier in outputs:
                    x = x + earlier
            # contiguous copies, as MSST's einops.pack makes them: reduced-precision GEMMs round by memory layout
            x = time(x.transpose(1, 2).contiguous().view(batch * bands, frames, dim))
            x = x.view(batch, bands, frames, dim).transpose(1, 2).contiguous()
            x = freq(x.view(batch * frames, bands, dim)).view(batch, frames, bands, dim)
            if self.skip_connection:
                outputs.append(x)
        return x


class BandSplit(nn.Module):
    """Each band's slice of the frame vector -> RMSNorm -> Linear to ``dim``; keys ``to_features.{b}.0``/``.1``."""

    def __init__(self, dim: int, widths: Sequence[int]) -> None:
        super().__init__()
        self.widths = list(widths)
        self.to_features = nn.ModuleList(nn.Sequential(RMSNorm(width), nn.Linear(width, dim)) for width in widths)

    def forward(self, x: Tensor) -> Tensor:
        """(batch, frames, sum of widths) -> (batch, frames, bands, dim)."""
        parts = x.split(self.widths, dim=-1)
        return torch.stack([net(part) for net, part in zip(self.to_features, parts)], dim=-2)


def mask_mlp(dim: int, width: int, hidden: int, hidden_layers: int) -> nn.Sequential:
    """Linear layers dim -> hidden (x hidden_layers) -> 2 width with Tanh between them (keys 0, 2, 4, ...), then a
    GLU that halves the output to the band's width."""
    sizes = [dim, *[hidden] * hidden_layers, 2 * width]
    layers: list[nn.Module] = []
    for index, (size_in, size_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        if index:
            layers.append(nn.Tanh())
        layers.append(nn.Linear(size_in, size_out))
    return nn.Sequential(nn.Sequential(*layers), nn.GLU(dim=-1))


class MaskEstimator(nn.Module):
    """One stem's mask: per band, an MLP of that band's features; keys ``to_freqs.{b}.0.{2m}``."""

    def __init__(self, dim: int, widths: Sequence[int], hidden: int, hidden_layers: int) -> None:
        super().__init__()
        self.to_freqs = nn.ModuleList(mask_mlp(dim, width, hidden, hidden_layers) for width in widths)

    def forward(self, x: Tensor) -> Tensor:
        """(batch, frames, bands, dim) -> (batch, frames, sum of widths)."""
        return torch.cat([mlp(band) for mlp, band in zip(self.to_freqs, x.unbind(dim=-2))], dim=-1)


class Stft:
    """torch.stft/istft as MSST calls them: a periodic Hann window of ``win_length``, centred frames with reflected
    ends, one-sided, scaled only when ``normalized``. Not a module: it holds no weights."""

    def __init__(self, n_fft: int, hop_length: int, win_length: int, normalized: bool) -> None:
        self.n_fft, self.hop_length, self.win_length, self.normalized = n_fft, hop_length, win_length, normalized
        self.bins = n_fft // 2 + 1

    def _window(self, device: torch.device) -> Tensor:
        return torch.hann_window(self.win_length, device=device)

    def spectrum(self, raw: Tensor) -> Tensor:
        """(batch, channels, samples) -> (batch, bins * channels, frames, 2): rows bin-major with the channels of a
        bin next to each other (row 2f + c for stereo), last axis real and imaginary part."""
        batch, channels, samples = raw.shape
        spec = torch.stft(
            raw.reshape(batch * channels, samples),
            self.n_fft,
            self.hop_length,
            self.win_length,
            self._window(raw.device),
            normalized=self.normalized,
            return_complex=True,
        )
        spec = torch.view_as_real(spec).reshape(batch, channels, self.bins, -1, 2)
        return spec.transpose(1, 2).reshape(batch, self.bins * channels, -1, 2)

    def waveform(self, spec: Tensor, length: int | None) -> Tensor:
        """Complex (..., bins, frames) -> (..., samples); ``length`` None gives hop * (frames - 1) samples."""
        lead = spec.shape[:-2]
        wave = torch.istft(
            spec.reshape(-1, *spec.shape[-2:]),
            self.n_fft,
            self.hop_length,
            self.win_length,
            self._window(spec.device),
            normalized=self.normalized,
            length=length,
        )
        return wave.reshape(*lead, -1)


class BandRoformer(nn.Module):
    """The skeleton of both networks: STFT, band split, axial transformer, one complex mask per stem, iSTFT.

    A subclass says which spectrum rows feed the bands (`band_rows`), how the bands' masks return to the rows
    (`row_masks`), and how long the output is (`output_length`). ``forward`` maps (batch, channels, samples)
    to (batch, stems, channels, samples').
    """

    def __init__(
        self,
        *,
        widths: Sequence[int],
        dim: int,
        depth: int,
        stereo: bool,
        num_stems: int,
        time_transformer_depth: int,
        freq_transformer_depth: int,
        linear_transformer_depth: int,
        dim_head: int,
        heads: int,
        stft: Stft,
        zero_dc: bool,
        mask_hidden_layers: int,
        mlp_expansion_factor: int,
        skip_connection: bool,
        use_shared_bias: bool,
        norm_output: bool,
    ) -> None:
        super().__init__()
        self.channels = 2 if stereo else 1
        self.stft = stft
        self.zero_dc = zero_dc
        shared_biases = None
        if use_shared_bias:  # names as the converted "Logic" checkpoints store them (not in MSST)
            self.linear_62_bias_0 = nn.Parameter(torch.zeros(heads * dim_head * 3))
            self.linear_64_bias_0 = nn.Parameter(torch.zeros(dim))
            shared_biases = (self.linear_62_bias_0, self.linear_64_bias_0)
        self.layers = AxialTransformer(
            dim=dim,
            depth=depth,
            heads=heads,
            dim_head=dim_head,
            time_depth=time_transformer_depth,
            freq_depth=freq_transformer_depth,
            linear_depth=linear_transformer_depth,
            norm_output=norm_output,
            skip_connection=skip_connection,
            shared_biases=shared_biases,
        )
        self.final_norm: nn.Module = nn.Identity()
        self.band_split = BandSplit(dim, widths)
        hidden = dim * mlp_expansion_factor
        self.mask_estimators = nn.ModuleList(
            MaskEstimator(dim, widths, hidden, mask_hidden_layers) for _ in range(num_stems)
        )

    def band_rows(self, spec: Tensor) -> Tensor:
        """(batch, rows, frames, 2) spectrum -> (batch, band rows, frames, 2) in band order."""
        raise NotImplementedError

    def row_masks(self, masks: Tensor) -> Tensor:
        """Complex (batch, stems, band rows, frames) -> complex (batch, stems, rows, frames)."""
        raise NotImplementedError

    def output_length(self, samples: int) -> int | None:
        raise NotImplementedError

    def forward(self, raw: Tensor) -> Tensor:
        batch, channels, samples = raw.shape
        if channels != self.channels:
            raise ValueError(f"the network takes {self.channels} channel(s), got {channels}")
        spec = self.stft.spectrum(raw)
        frames = spec.shape[2]
        x = self.band_rows(spec).transpose(1, 2).reshape(batch, frames, -1)  # frame vectors: (row, re/im)
        x = self.final_norm(self.layers(self.band_split(x)))
        masks = torch.stack([estimator(x) for estimator in self.mask_estimators], dim=1)
        masks = torch.view_as_complex(masks.float().unflatten(-1, (-1, 2)).transpose(2, 3))
        out = torch.view_as_complex(spec).unsqueeze(1) * self.row_masks(masks)  # (batch, stems, rows, frames)
        stems = out.shape[1]
        out = out.unflatten(2, (self.stft.bins, channels)).transpose(2, 3)  # (batch, stems, channels, bins, frames)
        if self.zero_dc:
            out[..., 0, :] = 0  # the DC bin of every frame (`out` is a fresh tensor)
        return self.stft.waveform(out, self.output_length(samples)).reshape(batch, stems, channels, -1)
