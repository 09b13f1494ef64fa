"""Mel-Band RoFormer (Wang et al. 2023, "Mel-RoFormer for Vocal Separation and Vocal Melody Transcription") as MSST
runs it.

Bands follow the mel scale (mel_bands.py) and overlap: a bin shared by two bands feeds both, and its mask is the
mean of the bands' complex masks. MSST's `MelBandRoformer` (models/bs_roformer/mel_band_roformer.py) gives the
details this network keeps: an RMSNorm after every time and band transformer and none after the trunk, mask MLPs
with ``mask_estimator_depth`` hidden layers (one Linear more than BS-RoFormer's), and an iSTFT of hop * (samples //
hop) samples unless ``match_input_audio_length``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from uvr_cli.engine.families.roformer.layers import BandRoformer, Stft, check_settings
from uvr_cli.engine.families.roformer.mel_bands import mel_band_bins


class MelBandRoformer(BandRoformer):
    """Keyword arguments are MSST's ``config.model`` keys with MSST's defaults; keys that only matter in training
    are accepted and ignored, unknown keys raise ModelError."""

    freq_indices: Tensor
    num_bands_per_row: Tensor

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
        num_bands: int = 60,
        dim_head: int = 64,
        heads: int = 8,
        sample_rate: int = 44100,
        stft_n_fft: int = 2048,
        stft_hop_length: int = 512,
        stft_win_length: int = 2048,
        stft_normalized: bool = False,
        stft_window_fn: None = None,
        zero_dc: bool = True,
        mask_estimator_depth: int = 1,
        match_input_audio_length: bool = False,
        mlp_expansion_factor: int = 4,
        skip_connection: bool = False,
        use_shared_bias: bool = False,
        use_pope: bool = False,
        **training_only: object,
    ) -> None:
        check_settings("Mel-Band RoFormer", training_only, stft_window_fn, use_pope)
        stft = Stft(stft_n_fft, stft_hop_length, stft_win_length, stft_normalized)
        member = mel_band_bins(sample_rate, stft_n_fft, num_bands)
        channels = 2 if stereo else 1
        super().__init__(
            widths=[2 * channels * int(bins) for bins in member.sum(axis=1)],
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
            mask_hidden_layers=mask_estimator_depth,
            mlp_expansion_factor=mlp_expansion_factor,
            skip_connection=skip_connection,
            use_shared_bias=use_shared_bias,
            norm_output=True,
        )
        self.match_input_audio_length = match_input_audio_length
        bins = member.nonzero()[1]  # band by band, ascending bins
        rows = (channels * bins[:, None] + range(channels)).reshape(-1)  # each bin's channels: rows 2f, 2f + 1
        counts = member.sum(axis=0).repeat(channels)
        self.register_buffer("freq_indices", torch.as_tensor(rows), persistent=False)
        self.register_buffer("num_bands_per_row", torch.as_tensor(counts, dtype=torch.float32), persistent=False)

    def band_rows(self, spec: Tensor) -> Tensor:
        return spec.index_select(1, self.freq_indices)

    def row_masks(self, masks: Tensor) -> Tensor:
        batch, stems, _, frames = masks.shape
        rows = self.num_bands_per_row.shape[0]
        summed = masks.new_zeros(batch, stems, rows, frames).index_add_(2, self.freq_indices, masks)
        return summed / self.num_bands_per_row[:, None]  # every row is in one band at least

    def output_length(self, samples: int) -> int | None:
        return samples if self.match_input_audio_length else None
