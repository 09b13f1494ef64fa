"""The `uvr` command: option parsing and reporting only; the work is done by `uvr_cli.Separator`."""
