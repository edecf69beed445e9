"""Convert an OpenAI guided-diffusion (ADM) checkpoint into a diffusers folder that DiffusionPrior loads.

The folder holds ``config.json`` + ``diffusion_pytorch_model.safetensors`` (a ``UNet2DModel``) and
``scheduler_config.json`` (ADM's noise schedule, eps prediction). The model flags are guided-diffusion's own: start
from a published ``--model``'s flags and override any flag, or paste a model's ``MODEL_FLAGS``.

    basicsr-diffloss-convert-adm --checkpoint experiments/pretrained_models/256x256_diffusion_uncond.pt \\
        --model 256x256_diffusion_uncond --output experiments/pretrained_models/adm_256_uncond

then ``prior: {type: DiffusionPrior, pretrained: experiments/pretrained_models/adm_256_uncond}``. See docs/priors.md.
An ``--output`` folder that exists and is not empty is refused (a ``unet/`` left in it would be what DiffusionPrior
loads), unless ``--overwrite``, which deletes it first. ``python scripts/convert_guided_diffusion.py`` is the same
command.
"""
import argparse
import json
import os
import pickle
import shutil
import time
import zipfile
from os import path as osp

from diffusers import DDPMScheduler

from ..options import UserError
from ..priors import DiffusionPrior, load_guided_diffusion, resolve_flags
from ..priors.guided_diffusion import BOOL_FLAGS, DEFAULT_FLAGS, INT_FLAGS, MODELS
from .user_errors import exit_on_user_error


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog='basicsr-diffloss-convert-adm', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--checkpoint', required=True, help='the guided-diffusion .pt state dict')
    parser.add_argument('--output', required=True, help='the diffusers folder to write')
    parser.add_argument('--model', choices=sorted(MODELS), help='start from the flags of this published checkpoint')
    parser.add_argument('--overwrite', action='store_true', help='delete an existing --output folder first')
    parser.add_argument('--debug', action='store_true', help='show the traceback of a user error')
    flags = parser.add_argument_group('guided-diffusion flags (override the model\'s; default: guided-diffusion\'s)')
    for name, default in DEFAULT_FLAGS.items():
        kind = 'True/False' if name in BOOL_FLAGS else 'int' if name in INT_FLAGS else type(default).__name__
        flags.add_argument(f'--{name}', metavar=kind.upper(), help=f'guided-diffusion default: {default!r}')
    return parser.parse_args(argv)


def check_paths(args):
    """The checkpoint must be a torch file; the output folder new, empty, or replaced with ``--overwrite``."""
    if not osp.isfile(args.checkpoint):
        raise UserError(f"--checkpoint: '{args.checkpoint}' is not a file.")
    with open(args.checkpoint, 'rb') as f:
        legacy_pickle = f.read(1) == b'\x80'
    if not (zipfile.is_zipfile(args.checkpoint) or legacy_pickle):
        raise UserError(f"--checkpoint: '{args.checkpoint}' is not a torch checkpoint (neither the zip nor the pickle "
                        'format torch.save writes); give the guided-diffusion .pt file.')
    if osp.isdir(args.output) and os.listdir(args.output):
        if not args.overwrite:
            raise UserError(f"--output: '{args.output}' exists and holds {sorted(os.listdir(args.output))[:5]}; "
                            'DiffusionPrior would load what is left there (a unet/ before config.json), so give a new '
                            'folder, or add --overwrite to delete it first.')
        shutil.rmtree(args.output)
    elif osp.exists(args.output) and not osp.isdir(args.output):
        raise UserError(f"--output: '{args.output}' is a file; give a folder.")


def main(argv=None):
    """The command: a user error ends it with one line (``--debug``: the traceback)."""
    return exit_on_user_error('basicsr-diffloss-convert-adm', convert, argv)


def convert(argv):
    args = parse_args(argv)
    flags = {name: value for name, value in vars(args).items() if name in DEFAULT_FLAGS and value is not None}
    resolved = resolve_flags(args.model, **flags)
    check_paths(args)
    start = time.perf_counter()
    try:
        unet, schedule = load_guided_diffusion(args.checkpoint, args.model, **flags)
    except (RuntimeError, pickle.UnpicklingError, EOFError) as error:
        raise UserError(f"--checkpoint: '{args.checkpoint}' cannot be read as a guided-diffusion state dict "
                        f'({str(error).strip().splitlines()[0]}).') from error
    unet.save_pretrained(args.output)
    DDPMScheduler(**schedule).save_pretrained(args.output)
    provenance = dict(checkpoint=osp.abspath(args.checkpoint), model=args.model,
                      flags={name: list(v) if isinstance(v, tuple) else v for name, v in resolved.items()})
    with open(osp.join(args.output, 'guided_diffusion.json'), 'w') as f:
        json.dump(provenance, f, indent=2)
    parameters = sum(p.numel() for p in unet.parameters())
    del unet
    loaded = sum(p.numel() for p in DiffusionPrior(pretrained=args.output).unet.parameters())  # loads strictly
    if loaded != parameters:
        raise RuntimeError(f'{args.output} loads a UNet of {loaded} parameters, not the {parameters} converted.')
    print(f'converted {args.checkpoint} ({parameters / 1e6:.1f}M parameters) into {args.output} in '
          f'{time.perf_counter() - start:.1f} s; it loads strictly as DiffusionPrior(pretrained={args.output!r}).')


if __name__ == '__main__':
    main()
