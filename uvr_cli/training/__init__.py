"""Making models: synthetic datasets, training, and evaluation against references."""
