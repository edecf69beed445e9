"""How well a diffusion prior predicts the noise on your images, at several timesteps, and what it sees there.

For crops of the images in a folder (fixed seed) it noises each crop to every timestep t with one noise draw,
prints the mean squared error of the prior's noise prediction (and of the x0 it implies) per t, and writes a PNG
grid of the x0 predictions ``x0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)``, clamped to [-1, 1]: the first row
holds the crops, then one row per t; one column per image. A prior that knows such images has a small eps MSE at
low t and sharp, plausible x0 predictions at high t.

    basicsr-diffloss-inspect-prior --prior experiments/pretrained_models/adm_256_uncond --images datasets/demo/val/gt
    basicsr-diffloss-inspect-prior --prior 256x256_diffusion_uncond.pt --guided_diffusion_model \\
        256x256_diffusion_uncond --images FOLDER --size 256 --crop center

``python scripts/inspect_prior.py`` is the same command.
"""
import argparse
import os
from os import path as osp

import cv2
import numpy as np
import torch
from torchvision.utils import save_image

from ..options import UserError
from ..priors import DiffusionPrior
from ..priors.guided_diffusion import MODELS
from .user_errors import exit_on_user_error

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')


def positive_integer(text):
    """An argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f'{text!r} is not a positive integer')
    return value


def timestep_list(text):
    """An argparse type: comma-separated integer timesteps."""
    try:
        return [int(t) for t in text.split(',')]
    except ValueError:
        raise argparse.ArgumentTypeError(f'{text!r} is not a comma-separated list of integers (e.g. 50,100,250)') \
            from None


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog='basicsr-diffloss-inspect-prior', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--prior', required=True,
                        help='a diffusers UNet or pipeline folder, or a guided-diffusion .pt (with the next option)')
    parser.add_argument('--guided_diffusion_model', choices=sorted(MODELS), help='the published model whose flags '
                        'the guided-diffusion .pt given in --prior has (other flags: convert it first)')
    parser.add_argument('--images', required=True, help='a folder of images')
    parser.add_argument('--size', type=positive_integer, default=64,
                        help='crop side, a multiple of the prior\'s size factor '
                        '(default: 64)')
    parser.add_argument('--crop', choices=('center', 'random'), default='center',
                        help='center: resize the short side to --size and take the centre (as the DiffLoss authors '
                        'did); random: a random --size crop at full resolution, of images at least that large '
                        '(default: center)')
    parser.add_argument('--timesteps', type=timestep_list, default='50,100,250,500,750',
                        help='comma-separated t (default: %(default)s)')
    parser.add_argument('--max_images', type=positive_integer, default=8,
                        help='use the first N images, sorted (default: 8)')
    parser.add_argument('--crops_per_image', type=positive_integer, default=1,
                        help='random crops per image, with --crop random (default: 1); the grid shows the first 8')
    parser.add_argument('--batch_size', type=positive_integer, default=4, help='images per UNet call (default: 4)')
    parser.add_argument('--seed', type=int, default=0, help='seed of the crops and the noise (default: 0)')
    parser.add_argument('--output', default='inspect_prior_x0.png', help='the PNG grid (default: %(default)s)')
    parser.add_argument('--debug', action='store_true', help='show the traceback of a user error')
    return parser.parse_args(argv)


def image_paths(folder, max_images):
    if not osp.isdir(folder):
        raise UserError(f"--images: '{folder}' is not a folder.")
    paths = sorted(osp.join(folder, name) for name in os.listdir(folder) if name.lower().endswith(IMAGE_EXTENSIONS))
    if not paths:
        raise UserError(f"--images: '{folder}' holds no images ({', '.join(IMAGE_EXTENSIONS)}).")
    return paths[:max_images]


def crop(image, size, mode, rng, path='the image'):
    """A ``size`` square of an RGB uint8 image: the resized centre, or a random crop at full resolution (an image
    smaller than ``size`` is refused, naming ``path``: enlarging it would show the prior blur it never saw)."""
    height, width = image.shape[:2]
    if mode == 'random' and min(height, width) < size:
        raise UserError(f"--crop random: '{path}' is {width}x{height}, smaller than --size {size}; use a smaller "
                        '--size, --crop center (which resizes), or leave the image out.')
    if mode == 'center':
        scale = size / min(height, width)
        width, height = max(size, round(width * scale)), max(size, round(height * scale))
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    if mode == 'center':
        top, left = (height - size) // 2, (width - size) // 2
    else:
        top, left = int(rng.integers(height - size + 1)), int(rng.integers(width - size + 1))
    return image[top:top + size, left:left + size]


def load_crops(paths, size, mode, seed, crops_per_image=1):
    """The crops as a float32 tensor (N * crops_per_image, 3, size, size) in [-1, 1]."""
    if crops_per_image > 1 and mode != 'random':
        raise UserError('--crops_per_image: more than one crop per image needs --crop random.')
    rng = np.random.default_rng(seed)
    crops = []
    for path in paths:
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        if image is None:
            raise UserError(f"--images: cannot read '{path}'.")
        crops += [crop(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), size, mode, rng, path)
                  for _ in range(crops_per_image)]
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 127.5 - 1


@torch.no_grad()
def inspect(prior, images, timesteps, seed, batch_size):
    """Per t: ``(t, abar_t, eps MSE, x0 MSE)``, and the x0 predictions (len(timesteps), N, 3, H, W) in [-1, 1]."""
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(seed)).to(images.device)
    rows, predictions = [], []
    for t in timesteps:
        steps = torch.full((len(images), ), t, device=images.device)
        x_t = prior.add_noise(images, noise, steps)
        eps = torch.cat([prior(chunk, steps[:len(chunk)])[0] for chunk in x_t.split(batch_size)])
        abar = prior.abar(steps)
        x0 = ((x_t - (1 - abar).sqrt() * eps) / abar.sqrt()).clamp(-1, 1)
        rows.append((t, abar[0].item(), (eps - noise).square().mean().item(), (x0 - images).square().mean().item()))
        predictions.append(x0.cpu())
    return rows, torch.stack(predictions)


def format_table(rows):
    lines = [f'{"t":>5} {"abar_t":>8} {"eps MSE":>10} {"x0 MSE":>10}']
    lines += [f'{t:>5} {abar:>8.4f} {eps:>10.5f} {x0:>10.5f}' for t, abar, eps, x0 in rows]
    lines.append(f'{"mean":>5} {"":>8} {np.mean([r[2] for r in rows]):>10.5f} {np.mean([r[3] for r in rows]):>10.5f}')
    return '\n'.join(lines)


def load_prior(args):
    """The prior named by ``--prior`` (and ``--guided_diffusion_model``); an error that names those flags."""
    guided_diffusion = {'model': args.guided_diffusion_model} if args.guided_diffusion_model else None
    try:
        return DiffusionPrior(pretrained=args.prior, guided_diffusion=guided_diffusion)
    except (UserError, OSError) as error:  # the loaders' messages name the YAML option 'pretrained'
        message = str(error).replace("DiffusionPrior option 'pretrained'", '--prior')
        message = message.replace("option 'guided_diffusion'", '--guided_diffusion_model')
        raise UserError(message if message.startswith('--prior') else f"--prior '{args.prior}': {message}") \
            from error


def main(argv=None):
    """The command: a user error ends it with one line (``--debug``: the traceback); returns the rows."""
    return exit_on_user_error('basicsr-diffloss-inspect-prior', inspect_images, argv)


def inspect_images(argv):
    args = parse_args(argv)
    if osp.splitext(args.output)[1].lower() not in ('.png', '.jpg', '.jpeg'):
        raise UserError(f"--output: '{args.output}' is where the grid of x0 predictions is written and needs an image "
                        'extension: give a path ending in .png (e.g. --output inspect_prior_x0.png).')
    timesteps = args.timesteps
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    prior = load_prior(args).to(device)
    if prior.encoder is not None:
        raise UserError(f'--prior: {args.prior} is a latent (Stable Diffusion-family) prior; this command measures '
                         'and draws denoising in pixel space, which would need its VAE decoder (never loaded).')
    if args.size % prior.size_factor:
        raise UserError(f'--size: {args.size} is not a multiple of the prior\'s size factor {prior.size_factor}.')
    if not all(0 <= t < prior.num_train_timesteps for t in timesteps):
        raise UserError(f'--timesteps: {timesteps} must lie in [0, {prior.num_train_timesteps - 1}].')
    paths = image_paths(args.images, args.max_images)
    images = load_crops(paths, args.size, args.crop, args.seed, args.crops_per_image)
    rows, predictions = inspect(prior, images.to(device), timesteps, args.seed, args.batch_size)
    print(f'prior {args.prior} on {device}: {len(paths)} images from {args.images}, {args.crops_per_image} '
          f'{args.crop} crop(s) of {args.size} px each, seed {args.seed}')
    print(format_table(rows))
    shown = slice(0, 8 if args.crops_per_image > 1 else None)
    grid = torch.cat([images[None, shown], predictions[:, shown]]).flatten(0, 1)
    os.makedirs(osp.dirname(osp.abspath(args.output)), exist_ok=True)
    save_image((grid + 1) / 2, args.output, nrow=len(images[shown]), padding=2)
    print(f"x0 predictions (rows: crops, then t = {','.join(map(str, timesteps))}; columns: images): {args.output}")
    return rows


def cli(argv=None):
    """The console script ``basicsr-diffloss-inspect-prior``: :func:`main`, exit status 0 (main returns the rows)."""
    main(argv)


if __name__ == '__main__':
    cli()
