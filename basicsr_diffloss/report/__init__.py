"""The pieces of scripts/compare.py: option files, training runs, evaluation, log parsing, grid, curves, Markdown.

Imported by the script only (it needs matplotlib), not by ``basicsr_diffloss`` itself.
"""
