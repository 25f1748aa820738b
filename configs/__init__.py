"""Hydra configs of the trainer (a regular package so that an installed `lrsched-train` finds them as pkg://configs)."""
