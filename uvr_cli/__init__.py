"""uvr: run UVR5 VR-architecture separation models from the command line or from Python."""

from __future__ import annotations

from uvr_cli.errors import AudioError, ModelError, UsageError, UvrError

__version__ = "0.1.0"

__all__ = ["AudioError", "ModelError", "UsageError", "UvrError", "Separator", "__version__"]


def __getattr__(name: str):
    # Imported lazily so `import uvr_cli` stays cheap (torch is loaded only when a Separator is made).
    if name == "Separator":
        from uvr_cli.separator import Separator

        return Separator
    raise AttributeError(name)
