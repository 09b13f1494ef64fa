"""Data shipped with uvr: band presets, the model registry and the bundled default model."""
