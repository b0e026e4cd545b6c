"""The command line (Typer): ``huiyuan --help``."""
