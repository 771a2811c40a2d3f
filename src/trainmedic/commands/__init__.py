"""Subcommands of the trainmedic CLI, one module each."""
