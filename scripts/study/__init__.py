"""The measured study of DiffLoss settings (scripts/run_study.py, docs/study.md): data split, settings, statistics."""
