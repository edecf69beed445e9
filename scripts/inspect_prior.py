"""``python scripts/inspect_prior.py ...`` = ``basicsr-diffloss-inspect-prior ...``
(basicsr_diffloss/commands/inspect_prior.py). image_paths, inspect and load_crops are re-exported for
scripts/export_default_prior.py."""
from basicsr_diffloss.commands.inspect_prior import image_paths, inspect, load_crops, main  # noqa: F401

if __name__ == '__main__':
    main()
