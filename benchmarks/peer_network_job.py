"""python-audio-separator's own network on one chunk, offline: run with the peer venv's Python (benchmarks/peer.py
makes it), for peer.py's check that its MDX23C and RoFormer networks compute what uvr's do.

usage: peer_network_job.py JOBS_JSON

JOBS_JSON is a list of {"folder", "model", "input", "output"}: the peer's model folder (peer.py's `model_folder`),
the checkpoint's name in it, an .npy chunk (1, 2, C) float32 and the .npy to write the network's output to. Each
checkpoint is loaded as the peer's users load it, through `Separator.load_model`, and the torch module it builds
(`model_instance.model_run`) is run on the chunk in eval mode under torch.no_grad, in fp32 on the CPU. All jobs
run in one process, so that torch and the peer are imported once. Nothing of uvr is imported here.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any


def network(folder: str, model: str) -> Any:
    """The torch module the peer's `Separator.load_model` builds for `model` in `folder`."""
    from audio_separator.separator import Separator

    separator = Separator(log_level=logging.WARNING, model_file_dir=folder, output_dir=folder)
    separator.load_model(model_filename=model)
    return separator.model_instance.model_run


def main() -> None:
    """Run every job of the JSON list in argv[1]."""
    import numpy as np
    import torch

    for job in json.loads(sys.argv[1]):
        module = network(job["folder"], job["model"]).eval()
        with torch.no_grad():
            out = module(torch.from_numpy(np.load(job["input"])))
        np.save(job["output"], out.float().cpu().numpy())


if __name__ == "__main__":
    main()
