"""The pieces of the compare command (``basicsr_diffloss.commands.compare``, ``basicsr-diffloss-compare``): option
files, training runs, evaluation, log parsing, grid, curves, Markdown.

``import basicsr_diffloss`` does not import this package. Only the pictures (``grid.save_grid``,
``curves.save_training_curves``) need matplotlib, the ``report`` extra (``pip install 'basicsr-diffloss[report]'``);
they import it when they draw (``pictures.py``), so the rest imports and runs without it.
"""
