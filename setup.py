from setuptools import find_packages, setup

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
        'matplotlib',  # scripts/compare.py's grid and curves (Agg backend)
    ],
    extras_require={'test': ['pytest', 'hypothesis']},
)
