"""python-audio-separator on one file, offline: run with the peer venv's Python (benchmarks/peer.py makes it).

usage: peer_job.py MODEL_DIR MODEL_FILE OUT_DIR INPUT SETTINGS_JSON

MODEL_DIR holds the model and the data files audio-separator reads instead of downloading them (peer.py writes
them); SETTINGS_JSON holds the Separator's keyword arguments that differ from its defaults. Nothing of uvr is
imported here: this is the peer, as its users run it.
"""

from __future__ import annotations

import json
import logging
import sys


def main() -> None:
    model_dir, model_file, out_dir, song, settings = sys.argv[1:6]
    from audio_separator.separator import Separator

    separator = Separator(
        log_level=logging.WARNING, model_file_dir=model_dir, output_dir=out_dir, **json.loads(settings)
    )
    separator.load_model(model_filename=model_file)
    separator.separate(song)


if __name__ == "__main__":
    main()
