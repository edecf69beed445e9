"""``python scripts/compare.py ...`` = ``basicsr-diffloss-compare ...`` (basicsr_diffloss/commands/compare.py)."""
from basicsr_diffloss.commands.compare import main

if __name__ == '__main__':
    main()
