"""The package's commands, installed as console scripts (setup.py ``entry_points``), each a function of ``argv``.

| command | module | what it does |
|---|---|---|
| ``basicsr-diffloss-train`` | ``pipelines.train`` | BasicSR's training with this package (``python -m basicsr_diffloss.train``) |
| ``basicsr-diffloss-test`` | ``pipelines.test`` | BasicSR's testing with this package (``python -m basicsr_diffloss.test``) |
| ``basicsr-diffloss-compare`` | ``compare`` | train (or take) a baseline and a +DiffLoss run, evaluate both, report |
| ``basicsr-diffloss-inspect-prior`` | ``inspect_prior`` | a prior's denoising error at several t, its x0 predictions |
| ``basicsr-diffloss-convert-adm`` | ``convert_adm`` | a guided-diffusion (ADM) ``.pt`` into a diffusers folder |

``scripts/compare.py``, ``scripts/inspect_prior.py`` and ``scripts/convert_guided_diffusion.py`` call the same
``main``. A user's mistake ends each with one line naming the option, file or flag (``user_errors.py``;
``--debug`` shows the traceback). The compare command needs the ``report`` extra (matplotlib):
``pip install 'basicsr-diffloss[report]'``.
"""
