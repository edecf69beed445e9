"""``python scripts/convert_guided_diffusion.py ...`` = ``basicsr-diffloss-convert-adm ...``
(basicsr_diffloss/commands/convert_adm.py)."""
from basicsr_diffloss.commands.convert_adm import main

if __name__ == '__main__':
    main()
