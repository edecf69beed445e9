"""Put a trained prior into the package as the default, with a model card whose numbers it measures itself.

    python scripts/export_default_prior.py [--experiment experiments/default_prior]

1. Copies ``<experiment>/models/prior_latest`` (config.json, safetensors, scheduler_config.json) to
   ``basicsr_diffloss/priors/default``.
2. Measures the eps-prediction MSE at several t on random crops of the training and the held-out photos
   (``datasets/prior_photos``, from scripts/prepare_prior_photos.py), for the prior and for an untrained prior of
   the same shape, with the same crops and noise.
3. Draws samples (DDIM, 50 steps) and the x0 predictions on held-out crops into ``samples.png``.
4. Writes ``MODEL_CARD.md``: architecture and size, training data with licenses and credits, the command and
   options, steps and wall time (from the training log), the losses, and what the prior is and is not good for.
   Whoever exports a prior then looks at samples.png and describes it under "What the pictures show".
"""
import argparse
import glob
import os
import re
import shutil
from os import path as osp

import torch
import yaml
from diffusers import DDIMScheduler, UNet2DModel
from torchvision.utils import make_grid, save_image

from basicsr_diffloss.priors import DiffusionPrior
from basicsr_diffloss.priors import DEFAULT_PRIOR
from inspect_prior import image_paths, inspect, load_crops
from prepare_prior_photos import PHOTOS

OPTIONS = 'options/train/prior/train_default_prior.yml'
PRIOR_FILES = ('config.json', 'diffusion_pytorch_model.safetensors', 'scheduler_config.json')
TIMESTEPS = (10, 50, 100, 250, 500, 750, 999)


def measure(prior, folder, size, crops_per_image, seed=0):
    """eps MSE per t on ``crops_per_image`` random ``size`` crops of each photo in ``folder``."""
    paths = image_paths(folder, max_images=100)
    images = load_crops(paths, size, 'random', seed, crops_per_image)
    rows, _ = inspect(prior, images, TIMESTEPS, seed, batch_size=32)
    return {t: eps for t, _, eps, _ in rows}, len(images)


@torch.no_grad()
def sample(prior, count, size, steps=50, seed=0):
    """``count`` DDIM samples of ``size`` px in [-1, 1]."""
    scheduler = DDIMScheduler.from_config(prior.scheduler.config)
    scheduler.set_timesteps(steps)
    x = torch.randn(count, prior.in_channels, size, size, generator=torch.Generator().manual_seed(seed))
    for t in scheduler.timesteps:
        eps, _ = prior(x, t.repeat(count))
        x = scheduler.step(eps, t, x).prev_sample
    return x.clamp(-1, 1)


def training_summary(experiment):
    """(iterations, wall time) from the newest training log of the experiment."""
    log = open(sorted(glob.glob(osp.join(experiment, 'train_*.log')))[-1]).read()
    iters = re.findall(r'iter:\s+([\d,]+),', log)
    consumed = re.search(r'Time consumed: ([\d:]+)', log)
    return (iters[-1].replace(',', '') if iters else '?'), (consumed.group(1) if consumed else '?')


def loss_table(results):
    header = '| t | ' + ' | '.join(results) + ' |\n|---|' + '---|' * len(results) + '\n'
    rows = [f'| {t} | ' + ' | '.join(f'{values[t]:.4f}' for values in results.values()) + ' |' for t in TIMESTEPS]
    means = ' | '.join(f'{sum(v.values()) / len(v):.4f}' for v in results.values())
    return header + '\n'.join(rows) + f'\n| mean | {means} |\n'


def photo_table():
    lines = ['| photo | split | credit | license |', '|---|---|---|---|']
    lines += [f'| {name.replace("skimage:", "scikit-image ")} | {split} | {credit} | {license_} |'
              for name, (split, credit, license_) in PHOTOS.items()]
    return '\n'.join(lines)


def write_card(output, prior, losses, counts, iterations, wall_time, options):
    params = sum(p.numel() for p in prior.unet.parameters())
    size_mb = osp.getsize(osp.join(output, 'diffusion_pytorch_model.safetensors')) / 2**20
    config = prior.unet.config
    network = {key: value for key, value in options['network_g'].items() if key != 'type'}
    train = options['datasets']['train']
    card = f"""# The default prior of basicsr-diffloss

What `DiffusionPrior(pretrained='default')` loads, and a DiffusionPrior given neither `pretrained` nor `unet`.
It is small, trained on the CPU, and knows little: **a GPU-trained replacement is owed** (no GPU was lent for it).
Use it to try DiffLoss end to end; for results, bring a real prior (docs/priors.md) or train a bigger one with
`options/train/prior/train_default_prior.yml` on a GPU.

## Architecture
diffusers `UNet2DModel`, {params:,} parameters ({size_mb:.1f} MB, float32 safetensors), eps prediction, DDPM linear
schedule (1e-4 to 0.02, 1000 steps). Levels {list(config.block_out_channels)}, {config.layers_per_block} resnet per
level, attention at the lowest level ({', '.join(config.down_block_types)}); size factor
{2 ** (len(config.block_out_channels) - 1)}: DiffLoss crops must be multiples of it. Middle block (h-space):
{config.block_out_channels[-1]} channels at 1/{2 ** (len(config.block_out_channels) - 1)} of the input size.

```yaml
{yaml.safe_dump(network, sort_keys=False).strip()}
```

## Training data
{counts['train']} photos for training, {counts['heldout']} held out (never trained on; chelsea is also the demo's
validation photo). Only licenses that allow shipping the weights: CC0, CC-BY and public domain; the CC-BY-SA and GPL
photos of the shared folder are left out. Credits:

{photo_table()}

Crops of {train['gt_size']} px, each drawn at a random scale from {train['scale_range'][0]} to
{train['scale_range'][1]} of the photo, random flips and 90-degree rotations, batch {train['batch_size_per_gpu']}.

## Training
```bash
python scripts/prepare_prior_photos.py
python -m basicsr_diffloss.train -opt {OPTIONS}
python scripts/export_default_prior.py
```
{iterations} iterations, Adam lr {options['train']['optim_g']['lr']} with {options['train']['warmup_iter']} warm-up
iterations and cosine decay, EMA {options['train']['ema_decay']} (the exported weights), wall time {wall_time} on
2 CPU cores (shared with other work part of the time).

## Denoising loss
Mean squared error of the predicted noise (lower is better) at each t, on {losses['crops']} random crops per photo
of {losses['size']} px at full resolution, with one noise draw per crop; the untrained prior has the same shape
and random weights (seed 0), measured on the same crops and noise. Predicting zero noise scores 1.0.

{losses['table']}
## Samples and denoising
`samples.png`: first {losses['samples']} rows, DDIM samples (50 steps, {losses['sample_size']} px) from pure noise;
then held-out crops and the prior's x0 estimates from them noised to t = 250, 500 and 750.

## What it is good for
It has learnt the local statistics of a dozen photos (smooth regions, edges, colour): enough to show the
mechanism and to make DiffLoss's terms respond to blur and noise. It has not learnt objects or textures in any
general way, its samples are blobs of colour rather than scenes, and DiffLoss with it should not be expected to
add natural detail. The held-out gap in the table tells how far it generalises.
"""
    path = osp.join(output, 'MODEL_CARD.md')
    with open(path, 'w') as f:
        f.write(card)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--experiment', default='experiments/default_prior', help='the training experiment folder')
    parser.add_argument('--photos', default='datasets/prior_photos', help='train/ and heldout/ photo folders')
    parser.add_argument('--output', default=DEFAULT_PRIOR, help='where the default prior lives in the package')
    parser.add_argument('--size', type=int, default=32, help='crop side for the losses (default: 32)')
    parser.add_argument('--crops', type=int, default=16, help='random crops per photo (default: 16)')
    args = parser.parse_args()

    os.makedirs(args.output, exist_ok=True)
    for name in PRIOR_FILES:
        shutil.copyfile(osp.join(args.experiment, 'models', 'prior_latest', name), osp.join(args.output, name))
    prior = DiffusionPrior(pretrained=args.output)
    torch.manual_seed(0)
    untrained = DiffusionPrior(unet=dict(UNet2DModel.load_config(args.output)))

    results, counts = {}, {}
    for split in ('train', 'heldout'):
        folder = osp.join(args.photos, split)
        results[f'{split}, default prior'], counts[split] = measure(prior, folder, args.size, args.crops)
        results[f'{split}, untrained'], _ = measure(untrained, folder, args.size, args.crops)
        counts[split] //= args.crops
    print(loss_table(results))

    samples = sample(prior, 16, 64)
    heldout = load_crops(image_paths(osp.join(args.photos, 'heldout'), 8), 64, 'random', 1, 3)[:8]
    _, x0 = inspect(prior, heldout, (250, 500, 750), seed=1, batch_size=8)
    rows = torch.cat([samples, heldout, x0.flatten(0, 1)])
    save_image(make_grid((rows + 1) / 2, nrow=8, padding=2), osp.join(args.output, 'samples.png'))

    with open(OPTIONS) as f:
        options = yaml.safe_load(f)
    iterations, wall_time = training_summary(args.experiment)
    write_card(args.output, prior,
               dict(table=loss_table(results), crops=args.crops, size=args.size, samples=2, sample_size=64), counts,
               iterations, wall_time, options)
    print(f'default prior and MODEL_CARD.md written to {args.output}')


if __name__ == '__main__':
    main()
