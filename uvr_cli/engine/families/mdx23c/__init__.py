"""The MDX23C family: TFC-TDF v3 networks (MDX23C-8KFFT-InstVoc_HQ and kin) from `.ckpt` files with a YAML config."""
