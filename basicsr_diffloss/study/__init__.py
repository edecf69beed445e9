"""The measured study of DiffLoss settings (scripts/study.py, docs/study.md): data split, settings, statistics."""
