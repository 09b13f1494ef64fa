"""`python -m uvr_cli` runs the `uvr` command."""

from uvr_cli.cli.main import main

main()
