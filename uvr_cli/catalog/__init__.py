"""Which model and preset: band presets, the UVR hash registry, the downloadable catalogue and the model cache."""
