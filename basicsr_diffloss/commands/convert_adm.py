"""Convert an OpenAI guided-diffusion (ADM) checkpoint into a diffusers folder that DiffusionPrior loads.

The folder holds ``config.json`` + ``diffusion_pytorch_model.safetensors`` (a ``UNet2DModel``) and
``scheduler_config.json`` (ADM's noise schedule, eps prediction). The model flags are guided-diffusion's own: start
from a published ``--model``'s flags and override any flag, or paste a model's ``MODEL_FLAGS``.

    basicsr-diffloss-convert-adm --checkpoint experiments/pretrained_models/256x256_diffusion_uncond.pt \\
        --model 256x256_diffusion_uncond --output experiments/pretrained_models/adm_256_uncond

then ``prior: {type: DiffusionPrior, pretrained: experiments/pretrained_models/adm_256_uncond}``. See docs/priors.md.
``python scripts/convert_guided_diffusion.py`` is the same command.
"""
import argparse
import json
import time
from os import path as osp

from diffusers import DDPMScheduler

from ..priors import DiffusionPrior, load_guided_diffusion, resolve_flags
from ..priors.guided_diffusion import BOOL_FLAGS, DEFAULT_FLAGS, INT_FLAGS, MODELS


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--checkpoint', required=True, help='the guided-diffusion .pt state dict')
    parser.add_argument('--output', required=True, help='the diffusers folder to write')
    parser.add_argument('--model', choices=sorted(MODELS), help='start from the flags of this published checkpoint')
    flags = parser.add_argument_group('guided-diffusion flags (override the model\'s; default: guided-diffusion\'s)')
    for name, default in DEFAULT_FLAGS.items():
        kind = 'True/False' if name in BOOL_FLAGS else 'int' if name in INT_FLAGS else type(default).__name__
        flags.add_argument(f'--{name}', metavar=kind.upper(), help=f'guided-diffusion default: {default!r}')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    flags = {name: value for name, value in vars(args).items() if name in DEFAULT_FLAGS and value is not None}
    resolved = resolve_flags(args.model, **flags)
    start = time.perf_counter()
    unet, schedule = load_guided_diffusion(args.checkpoint, args.model, **flags)
    unet.save_pretrained(args.output)
    DDPMScheduler(**schedule).save_pretrained(args.output)
    provenance = dict(checkpoint=osp.abspath(args.checkpoint), model=args.model,
                      flags={name: list(v) if isinstance(v, tuple) else v for name, v in resolved.items()})
    with open(osp.join(args.output, 'guided_diffusion.json'), 'w') as f:
        json.dump(provenance, f, indent=2)
    parameters = sum(p.numel() for p in unet.parameters())
    del unet
    DiffusionPrior(pretrained=args.output)  # the folder must load strictly
    print(f'converted {args.checkpoint} ({parameters / 1e6:.1f}M parameters) into {args.output} in '
          f'{time.perf_counter() - start:.1f} s; it loads strictly as DiffusionPrior(pretrained={args.output!r}).')


if __name__ == '__main__':
    main()
