"""Placeholder entry point; replaced by the Typer app."""


def main() -> None:
    raise SystemExit("uvr: not built yet")
