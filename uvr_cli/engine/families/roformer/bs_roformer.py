"""BS-RoFormer (Lu et al. 2023, "Music Source Separation with Band-Split RoPE Transformer") as MSST runs it.

The spectrum is cut into consecutive bands of ``freqs_per_bands`` bins; each band's rows (bin, channel, real and
imaginary part) become one token per frame. MSST's `BSRoformer` (models/bs_roformer/bs_roformer.py) gives the
details this network keeps: no RMSNorm after each time or band transformer but one ``final_norm`` after the trunk,
mask MLPs with ``mask_estimator_depth`` Linear layers, the iSTFT cut to the input's length.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from uvr_cli.engine.families.roformer.layers import BandRoformer, RMSNorm, Stft, check_settings
from uvr_cli.errors import ModelError

# fmt: off
DEFAULT_FREQS_PER_BANDS = (
    *(2,) * 24, *(4,) * 12, *(12,) * 8, *(24,) * 8, *(48,) * 8, 128, 129,
)  # 62 bands, 1025 bins: MSST's default and the layout of the viperx 317 model
# fmt: on


class BSRoformer(BandRoformer):
    """Keyword arguments are MSST's ``config.model`` keys with MSST's defaults; keys that only matter in training
    are accepted and ignored, unknown keys raise ModelError."""

    def __init__(
        self,
        *,
        dim: int,
        depth: int,
        stereo: bool = False,
        num_stems: int = 1,
        time_transformer_depth: int = 2,
        freq_transformer_depth: int = 2,
        linear_transformer_depth: int = 0,
        freqs_per_bands: Sequence[int] = DEFAULT_FREQS_PER_BANDS,
        dim_head: int = 64,
        heads: int = 8,
        stft_n_fft: int = 2048,
        stft_hop_length: int = 512,
        stft_win_length: int = 2048,
        stft_normalized: bool = False,
        stft_window_fn: None = None,
        zero_dc: bool = True,
        mask_estimator_depth: int = 2,
        mlp_expansion_factor: int = 4,
        skip_connection: bool = False,
        use_shared_bias: bool = False,
        use_pope: bool = False,
        **training_only: object,
    ) -> None:
        check_settings("BS-RoFormer", training_only, stft_window_fn, use_pope)
        stft = Stft(stft_n_fft, stft_hop_length, stft_win_length, stft_normalized)
        if len(freqs_per_bands) < 2 or sum(freqs_per_bands) != stft.bins:
            raise ModelError(
                f"BS-RoFormer: freqs_per_bands must split the {stft.bins} bins of stft_n_fft {stft_n_fft} into "
                f"bands, got {len(freqs_per_bands)} bands of {sum(freqs_per_bands)} bins"
            )
        channels = 2 if stereo else 1
        super().__init__(
            widths=[2 * channels * bins for bins in freqs_per_bands],
            dim=dim,
            depth=depth,
            stereo=stereo,
            num_stems=num_stems,
            time_transformer_depth=time_transformer_depth,
            freq_transformer_depth=freq_transformer_depth,
            linear_transformer_depth=linear_transformer_depth,
            dim_head=dim_head,
            heads=heads,
            stft=stft,
            zero_dc=zero_dc,
            mask_hidden_layers=mask_estimator_depth - 1,
            mlp_expansion_factor=mlp_expansion_factor,
            skip_connection=skip_connection,
            use_shared_bias=use_shared_bias,
            norm_output=False,
        )
        self.final_norm = RMSNorm(dim)

    def band_rows(self, spec: Tensor) -> Tensor:
        return spec  # the bands are consecutive and cover every row once

    def row_masks(self, masks: Tensor) -> Tensor:
        return masks

    def output_length(self, samples: int) -> int | None:
        return samples
