from setuptools import find_packages, setup

REPORT = ['matplotlib']  # the compare command's grid and curves (basicsr_diffloss/report, Agg backend)
STABLE_DIFFUSION = ['transformers>=4.45']  # the text encoders of Stable Diffusion-family priors (priors/stable_diffusion.py)
COMMANDS = {  # console script -> function of basicsr_diffloss/commands/ (each returns None: exit status 0)
    'basicsr-diffloss-train': 'pipelines:train',
    'basicsr-diffloss-test': 'pipelines:test',
    'basicsr-diffloss-compare': 'compare:main',
    'basicsr-diffloss-inspect-prior': 'inspect_prior:cli',
    'basicsr-diffloss-convert-adm': 'convert_adm:main',
}

setup(
    name='basicsr-diffloss',
    version='0.1.0',
    description='DiffLoss: a frozen diffusion prior as a training constraint for BasicSR restoration networks',
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    packages=find_packages(include=['basicsr_diffloss', 'basicsr_diffloss.*']),
    package_data={'basicsr_diffloss': ['priors/default/*']},
    python_requires='>=3.10,<3.13',
    install_requires=[
        'basicsr==1.4.2',
        'torch>=2.1',
        'torchvision>=0.16',
        'diffusers>=0.32',
        'safetensors',
        'opencv-python',
        'lmdb',
        'pyyaml',
        'scikit-image',
        'piq>=0.8',  # HaarPSI, GMSD, MS-SSIM (basicsr_diffloss.metrics)
        'lpips>=0.1.4',  # LPIPS; ships its linear layers, the backbone weights are a local file
        'dists-pytorch>=0.1',  # ships DISTS' alpha/beta weights; the VGG16 weights are a local file
    ],
    extras_require={'report': REPORT, 'stable-diffusion': STABLE_DIFFUSION, 'realesrgan': ['realesrgan==0.3.0'],
                    'test': ['pytest', 'hypothesis', *REPORT, *STABLE_DIFFUSION]},
    entry_points={'console_scripts': [f'{name} = basicsr_diffloss.commands.{target}'
                                      for name, target in COMMANDS.items()]},
)
