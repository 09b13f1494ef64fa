"""The signal path: networks and weights, spectral analysis and synthesis, resampling, the window loop, the pipeline."""
