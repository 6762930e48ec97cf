"""The `mer` command line (typer)."""
