"""The signal path: networks and their weights, spectral analysis/synthesis, resampling, the window loop, the block pipeline."""
