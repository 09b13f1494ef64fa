"""MSST-format models (MDX23C, RoFormer): a checkpoint and its YAML config, and the authors' chunking."""
