"""OpenAI guided-diffusion (ADM) checkpoints as diffusers ``UNet2DModel``: flags, published models, config and weights.

The flags keep guided-diffusion's names and meaning (``scripts/image_sample.py --help`` there), so a model's
``MODEL_FLAGS`` and ``DIFFUSION_FLAGS`` carry over unchanged. ``load_guided_diffusion`` turns a ``.pt`` state dict
into a diffusers UNet whose forward pass equals ADM's (tests/test_guided_diffusion.py checks it against an
independent reference), or fails with the keys or flags that do not fit.
"""
from os import path as osp

import torch
from diffusers import UNet2DModel

from ..options import OptionError, choice, flag, number

OWNER = 'guided-diffusion'  # how option errors name the flags
NUM_CLASSES = 1000  # ImageNet: guided-diffusion's class-conditional models

# guided-diffusion's defaults (script_util.model_and_diffusion_defaults), model and diffusion flags together.
DEFAULT_FLAGS = dict(image_size=64, num_channels=128, num_res_blocks=2, channel_mult='', attention_resolutions='16,8',
                     num_heads=4, num_heads_upsample=-1, num_head_channels=-1, learn_sigma=False, class_cond=False,
                     resblock_updown=False, use_scale_shift_norm=True, use_new_attention_order=False,
                     diffusion_steps=1000, noise_schedule='linear', dropout=0.0, use_fp16=False, use_checkpoint=False)
# Accepted so that published flag lists paste unchanged; they do not change an eval-mode float32 forward pass.
IGNORED_FLAGS = ('dropout', 'use_fp16', 'use_checkpoint')
BOOL_FLAGS = ('learn_sigma', 'class_cond', 'resblock_updown', 'use_scale_shift_norm', 'use_new_attention_order',
              'use_fp16', 'use_checkpoint')
INT_FLAGS = ('image_size', 'num_channels', 'num_res_blocks', 'num_heads', 'num_heads_upsample', 'num_head_channels',
             'diffusion_steps')
DEFAULT_CHANNEL_MULT = {512: (0.5, 1, 1, 2, 2, 4, 4), 256: (1, 1, 2, 2, 4, 4), 128: (1, 1, 2, 3, 4), 64: (1, 2, 3, 4)}

# The published checkpoints' flags, by model name: guided-diffusion's README, and for ffhq_256 the FFHQ model of DPS and DDNM.
_ADM = dict(attention_resolutions='32,16,8', learn_sigma=True, resblock_updown=True, use_scale_shift_norm=True,
            diffusion_steps=1000, noise_schedule='linear', num_res_blocks=2)
_ADM_256 = dict(_ADM, image_size=256, num_channels=256, num_head_channels=64, use_fp16=True)
MODELS = {
    '64x64_diffusion': dict(_ADM, image_size=64, num_channels=192, num_res_blocks=3, num_head_channels=64,
                            class_cond=True, use_new_attention_order=True, noise_schedule='cosine', dropout=0.1,
                            use_fp16=True),
    '128x128_diffusion': dict(_ADM, image_size=128, num_channels=256, num_heads=4, class_cond=True, use_fp16=True),
    '256x256_diffusion': dict(_ADM_256, class_cond=True),
    '256x256_diffusion_uncond': dict(_ADM_256, class_cond=False),
    '512x512_diffusion': dict(_ADM_256, image_size=512, class_cond=True, use_fp16=False),
    'lsun_bedroom': dict(_ADM_256, class_cond=False, dropout=0.1),
    'lsun_cat': dict(_ADM_256, class_cond=False, dropout=0.1),
    'lsun_horse': dict(_ADM_256, class_cond=False, dropout=0.1),
    'lsun_horse_nodropout': dict(_ADM_256, class_cond=False, dropout=0.0),
    'ffhq_256': dict(_ADM, image_size=256, num_channels=128, num_res_blocks=1, channel_mult='1,1,2,2,4,4',
                     attention_resolutions='16', num_heads=4, num_head_channels=64, class_cond=False),
}

# Inside one ADM ResBlock / AttentionBlock: module name -> diffusers module name.
_RESNET_MODULES = {'in_layers.0': 'norm1', 'in_layers.2': 'conv1', 'emb_layers.1': 'time_emb_proj',
                   'out_layers.0': 'norm2', 'out_layers.3': 'conv2', 'skip_connection': 'conv_shortcut'}
_LISTED_KEYS = 20  # how many keys an error lists


class NotRepresentableError(ValueError):
    """An ADM configuration that diffusers' ``UNet2DModel`` cannot compute exactly."""


def _bool(name, value):
    return flag(OWNER, name, value, from_text=True)


def _int(name, value):
    return number(OWNER, name, value, integer=True, from_text=True)


def _numbers(name, value):
    """A comma string ("32,16,8") or a list of numbers, as a tuple of ints (floats where not whole)."""
    items = value.split(',') if isinstance(value, str) else value
    try:
        values = [float(item) for item in items]
    except (TypeError, ValueError):
        raise ValueError(f"guided-diffusion flag '{name}': {value!r} is not a comma-separated list of numbers, "
                         "e.g. '32,16,8'.") from None
    if not values or min(values) <= 0:
        raise ValueError(f"guided-diffusion flag '{name}': {value!r} must list numbers > 0.")
    return tuple(int(v) if v == int(v) else v for v in values)


def resolve_flags(model=None, **flags):
    """Complete guided-diffusion flags: its defaults, then the published model's, then ``flags``; typed and checked.

    Args:
        model (str | None): one of ``MODELS`` (a published checkpoint's flags), or None for guided-diffusion's
            defaults.
        **flags: guided-diffusion flags with their own names: ``image_size``, ``num_channels``, ``num_res_blocks``,
            ``channel_mult`` (comma string or list; '' = the default for ``image_size``: 512 (0.5,1,1,2,2,4,4),
            256 (1,1,2,2,4,4), 128 (1,1,2,3,4), 64 (1,2,3,4)), ``attention_resolutions`` (comma string of
            resolutions in pixels; attention runs where ``image_size // resolution`` is a level's downsampling rate),
            ``num_heads``, ``num_heads_upsample``, ``num_head_channels`` (-1: use ``num_heads``), ``learn_sigma``,
            ``class_cond`` (1000 classes), ``resblock_updown``, ``use_scale_shift_norm``,
            ``use_new_attention_order``, ``diffusion_steps``, ``noise_schedule`` (``linear`` or ``cosine``).
            ``dropout``, ``use_fp16`` and ``use_checkpoint`` are accepted and ignored. Booleans and integers may be
            written as text, as on guided-diffusion's command line (``True``, ``256``).

    Returns:
        dict: every flag, with ``channel_mult`` and ``attention_resolutions`` as tuples of numbers.
    """
    if 'preset' in flags:
        raise OptionError(f"{OWNER} option 'preset' is now called 'model' (DiffLoss has a 'preset' of its own): "
                          f"write model: {flags['preset']}.")
    if model is not None:
        choice(OWNER, 'model', model, sorted(MODELS))
    unknown = sorted(set(flags) - set(DEFAULT_FLAGS))
    if unknown:
        raise OptionError(f'{OWNER} flags {unknown} are unknown; the flags are {sorted(DEFAULT_FLAGS)} '
                          "(and 'model').")
    resolved = {**DEFAULT_FLAGS, **(MODELS[model] if model else {}), **flags}
    for name in BOOL_FLAGS:
        resolved[name] = _bool(name, resolved[name])
    for name in INT_FLAGS:
        resolved[name] = _int(name, resolved[name])
    if resolved['channel_mult'] in ('', None):
        if resolved['image_size'] not in DEFAULT_CHANNEL_MULT:
            raise ValueError(f"guided-diffusion flag 'channel_mult': no default for image_size "
                             f"{resolved['image_size']} (guided-diffusion has them for "
                             f"{sorted(DEFAULT_CHANNEL_MULT)}); give channel_mult, e.g. '1,1,2,2,4,4'.")
        resolved['channel_mult'] = DEFAULT_CHANNEL_MULT[resolved['image_size']]
    resolved['channel_mult'] = _numbers('channel_mult', resolved['channel_mult'])
    resolved['attention_resolutions'] = _numbers('attention_resolutions', resolved['attention_resolutions'])
    if not all(isinstance(resolution, int) for resolution in resolved['attention_resolutions']):
        raise ValueError(f"guided-diffusion flag 'attention_resolutions': {resolved['attention_resolutions']} must be "
                         'whole numbers of pixels.')
    if resolved['noise_schedule'] not in ('linear', 'cosine'):
        raise ValueError(f"guided-diffusion flag 'noise_schedule': {resolved['noise_schedule']!r} is not 'linear' or "
                         "'cosine'.")
    return resolved


def _level_channels(flags):
    return [int(mult * flags['num_channels']) for mult in flags['channel_mult']]


def _attention_levels(flags):
    """Per level, whether ADM puts attention after its ResBlocks (level k downsamples by 2**k)."""
    rates = {flags['image_size'] // resolution for resolution in flags['attention_resolutions']}
    return [2**level in rates for level in range(len(flags['channel_mult']))]


def _attention_head_dim(flags):
    """The one head width that every ADM attention block uses, or NotRepresentableError."""
    channels, attention = _level_channels(flags), _attention_levels(flags)
    if flags['num_head_channels'] != -1:
        width = flags['num_head_channels']
        odd = sorted({c for c, on in zip(channels + channels[-1:], attention + [True]) if on and c % width})
        if odd:
            raise ValueError(f"guided-diffusion flag 'num_head_channels': {width} does not divide the attention "
                             f'channels {odd}.')
        return width
    up_heads = flags['num_heads'] if flags['num_heads_upsample'] == -1 else flags['num_heads_upsample']
    blocks = [(f'down level {k}', c, flags['num_heads']) for k, (c, on) in enumerate(zip(channels, attention)) if on]
    blocks += [('middle', channels[-1], flags['num_heads'])]
    blocks += [(f'up level {k}', c, up_heads) for k, (c, on) in enumerate(zip(channels, attention)) if on]
    widths = {c / heads for _, c, heads in blocks}
    if len(widths) > 1 or any(c % heads for _, c, heads in blocks):
        layout = ', '.join(f'{name}: {c} channels / {heads} heads' for name, c, heads in blocks)
        raise NotRepresentableError(
            f"guided-diffusion flags 'num_heads'/'num_heads_upsample' give attention heads of different widths "
            f'({layout}); diffusers UNet2DModel has one head width (attention_head_dim) for the whole network, so it '
            'cannot compute this model exactly.')
    return int(widths.pop())


def unet_config(flags):
    """The diffusers ``UNet2DModel`` config that computes the ADM network of complete ``flags`` (``resolve_flags``).

    ADM levels with attention become ``AttnDownBlock2D``/``AttnUpBlock2D``; the others ``ResnetDownsampleBlock2D``/
    ``ResnetUpsampleBlock2D`` with ``resblock_updown`` (ResBlocks that resample) or ``DownBlock2D``/``UpBlock2D``
    (strided / nearest-upsampling convolutions). Raises NotRepresentableError for ADM networks diffusers cannot
    express: attention heads of different widths (``num_heads`` without ``num_head_channels`` when the attention
    levels differ in width) and ``channel_mult[0] != 1`` (ADM's timestep embedding has ``num_channels`` features,
    diffusers' has ``block_out_channels[0]``).
    """
    channels, attention = _level_channels(flags), _attention_levels(flags)
    if channels[0] != flags['num_channels']:
        raise NotRepresentableError(
            f"guided-diffusion flag 'channel_mult': {flags['channel_mult']} starts with {flags['channel_mult'][0]}, "
            f"so the first level has {channels[0]} channels but the timestep embedding {flags['num_channels']}; "
            'diffusers UNet2DModel ties the two together and cannot compute this model exactly.')
    plain_down, plain_up = (('ResnetDownsampleBlock2D', 'ResnetUpsampleBlock2D') if flags['resblock_updown'] else
                            ('DownBlock2D', 'UpBlock2D'))
    return dict(
        sample_size=flags['image_size'], in_channels=3, out_channels=6 if flags['learn_sigma'] else 3,
        time_embedding_type='positional', flip_sin_to_cos=True, freq_shift=0,
        block_out_channels=channels, layers_per_block=flags['num_res_blocks'],
        down_block_types=['AttnDownBlock2D' if on else plain_down for on in attention],
        up_block_types=['AttnUpBlock2D' if on else plain_up for on in reversed(attention)],
        downsample_type='resnet' if flags['resblock_updown'] else 'conv',
        upsample_type='resnet' if flags['resblock_updown'] else 'conv',
        attention_head_dim=_attention_head_dim(flags), norm_num_groups=32, attn_norm_num_groups=32, norm_eps=1e-5,
        resnet_time_scale_shift='scale_shift' if flags['use_scale_shift_norm'] else 'default', act_fn='silu',
        num_class_embeds=NUM_CLASSES if flags['class_cond'] else None, dropout=0.0)


def scheduler_config(flags):
    """``DDPMScheduler`` options of ADM's noise schedule (``diffusion_steps``, ``noise_schedule``), eps prediction."""
    steps = flags['diffusion_steps']
    variance = 'learned_range' if flags['learn_sigma'] else 'fixed_large'
    if flags['noise_schedule'] == 'cosine':  # ADM's cosine schedule, betas capped at 0.999
        return dict(num_train_timesteps=steps, beta_schedule='squaredcos_cap_v2', prediction_type='epsilon',
                    variance_type=variance)
    scale = 1000 / steps  # ADM scales the linear schedule's ends with the number of steps
    return dict(num_train_timesteps=steps, beta_schedule='linear', beta_start=scale * 1e-4, beta_end=scale * 0.02,
                prediction_type='epsilon', variance_type=variance)


def _layout(flags):
    """``(ADM module prefix, diffusers module prefix, kind)`` for every ADM module; kind: copy, resnet, attention."""
    levels, per_level = len(flags['channel_mult']), flags['num_res_blocks']
    attention = _attention_levels(flags)
    layout = [('time_embed.0', 'time_embedding.linear_1', 'copy'), ('time_embed.2', 'time_embedding.linear_2', 'copy'),
              ('input_blocks.0.0', 'conv_in', 'copy'), ('out.0', 'conv_norm_out', 'copy'),
              ('out.2', 'conv_out', 'copy'),
              ('middle_block.0', 'mid_block.resnets.0', 'resnet'),
              ('middle_block.1', 'mid_block.attentions.0', 'attention'),
              ('middle_block.2', 'mid_block.resnets.1', 'resnet')]
    if flags['class_cond']:
        layout.append(('label_emb', 'class_embedding', 'copy'))
    index = 1
    for level in range(levels):
        for j in range(per_level):
            layout.append((f'input_blocks.{index}.0', f'down_blocks.{level}.resnets.{j}', 'resnet'))
            if attention[level]:
                layout.append((f'input_blocks.{index}.1', f'down_blocks.{level}.attentions.{j}', 'attention'))
            index += 1
        if level < levels - 1:
            layout.append((f'input_blocks.{index}.0', f'down_blocks.{level}.downsamplers.0', 'resnet')
                          if flags['resblock_updown'] else
                          (f'input_blocks.{index}.0.op', f'down_blocks.{level}.downsamplers.0.conv', 'copy'))
            index += 1
    index = 0
    for block, level in enumerate(reversed(range(levels))):
        for j in range(per_level + 1):
            layout.append((f'output_blocks.{index}.0', f'up_blocks.{block}.resnets.{j}', 'resnet'))
            sub = 1
            if attention[level]:
                layout.append((f'output_blocks.{index}.1', f'up_blocks.{block}.attentions.{j}', 'attention'))
                sub = 2
            if level and j == per_level:
                layout.append((f'output_blocks.{index}.{sub}', f'up_blocks.{block}.upsamplers.0', 'resnet')
                              if flags['resblock_updown'] else
                              (f'output_blocks.{index}.{sub}.conv', f'up_blocks.{block}.upsamplers.0.conv', 'copy'))
            index += 1
    return layout


def _split_qkv(tensor, head_dim, new_order):
    """ADM's fused qkv rows (3C) as diffusers' q, k, v (C each, heads laid out one after another).

    Legacy order (QKVAttentionLegacy) stores the rows head by head, q, k, v inside each head: (heads, 3, head_dim).
    The new order (QKVAttention) stores all of q, then k, then v, each head by head: (3, heads, head_dim).
    """
    channels, rest = tensor.shape[0] // 3, tensor.shape[1:]
    if new_order:
        parts = tensor.reshape(3, channels, *rest)
    else:
        parts = tensor.reshape(channels // head_dim, 3, head_dim, *rest).transpose(0, 1).reshape(3, channels, *rest)
    return [part.clone() for part in parts.unbind(0)]


def _convert_module(source, key, target, kind, head_dim, new_order):
    """The diffusers tensors of ADM parameter ``key`` (``source`` prefix stripped into ``target``), or None."""
    module, _, param = key.rpartition('.')
    if kind == 'copy':
        return {f'{target}.{key}': source}
    if kind == 'resnet':
        return {f'{target}.{_RESNET_MODULES[module]}.{param}': source} if module in _RESNET_MODULES else None
    if module == 'norm':
        return {f'{target}.group_norm.{param}': source}
    if module == 'proj_out':
        return {f'{target}.to_out.0.{param}': source.squeeze(-1)}
    if module == 'qkv':
        parts = _split_qkv(source.squeeze(-1), head_dim, new_order)
        return {f'{target}.to_{name}.{param}': part for name, part in zip('qkv', parts)}
    return None


def _listed(keys):
    shown = ', '.join(keys[:_LISTED_KEYS])
    return shown + (f', ... ({len(keys)} in all)' if len(keys) > _LISTED_KEYS else '')


def empty_unet(config):
    """A ``UNet2DModel`` with parameters on the meta device (no memory, no initialisation), to be filled."""
    with torch.device('meta'):
        return UNet2DModel(**config)


def convert_state_dict(state, flags):
    """A guided-diffusion ``UNetModel`` state dict as the state dict of ``UNet2DModel(**unet_config(flags))``.

    Float tensors become float32. Every checkpoint key must be converted and every UNet key filled with the right
    shape, or a ValueError lists the keys that do not fit (usually a flag that differs from the checkpoint's).
    """
    config = unet_config(flags)
    head_dim = config['attention_head_dim']
    converted, used = {}, set()
    for source_prefix, target_prefix, kind in _layout(flags):
        start = source_prefix + '.'
        for key in [key for key in state if key.startswith(start)]:
            tensor = state[key].float() if state[key].is_floating_point() else state[key]
            pieces = _convert_module(tensor, key[len(start):], target_prefix, kind, head_dim,
                                     flags['use_new_attention_order'])
            if pieces is not None:
                converted.update(pieces)
                used.add(key)
    expected = {key: value.shape for key, value in empty_unet(config).state_dict().items()}
    problems = []
    for label, keys in (('checkpoint keys left unconverted', sorted(set(state) - used)),
                        ('UNet keys not filled', sorted(set(expected) - set(converted))),
                        ('converted keys the UNet lacks', sorted(set(converted) - set(expected)))):
        if keys:
            problems.append(f'{label}: {_listed(keys)}')
    shapes = [f'{key} {tuple(converted[key].shape)} (UNet: {tuple(expected[key])})' for key in sorted(converted)
              if key in expected and converted[key].shape != expected[key]]
    if shapes:
        problems.append(f'shapes that differ: {_listed(shapes)}')
    if problems:
        shown = {name: flags[name] for name in DEFAULT_FLAGS if name not in IGNORED_FLAGS}
        raise ValueError('the guided-diffusion checkpoint does not match its flags ' + str(shown) + ':\n  ' +
                         '\n  '.join(problems) + '\nCheck the model and the flags (num_channels, num_res_blocks, '
                         'channel_mult, attention_resolutions, learn_sigma, class_cond, resblock_updown, '
                         'use_scale_shift_norm) against the ones the checkpoint was trained with.')
    return converted


def build_unet(state, flags):
    """A ``UNet2DModel`` (eval mode) holding the converted ``state`` of complete ``flags``."""
    config = unet_config(flags)
    unet = empty_unet(config)
    unet.load_state_dict(convert_state_dict(state, flags), strict=True, assign=True)
    return unet.eval()


def load_checkpoint(path):
    """A guided-diffusion ``.pt`` state dict, read with ``torch.load(weights_only=True)`` onto the CPU."""
    state = torch.load(path, map_location='cpu', weights_only=True)
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise ValueError(f"'{path}' is not a guided-diffusion state dict (a dict of tensors, as torch.save"
                         '(model.state_dict()) writes it).')
    return state


def load_guided_diffusion(path, model=None, **flags):
    """Load a guided-diffusion ``.pt`` checkpoint as ``(UNet2DModel, DDPMScheduler config dict)``.

    Args:
        path (str): the ``.pt`` file (e.g. ``256x256_diffusion_uncond.pt``).
        model (str | None): one of ``MODELS``; ``flags`` override its values.
        **flags: guided-diffusion flags (see ``resolve_flags``).
    """
    resolved = resolve_flags(model, **flags)
    unet_config(resolved)  # fail on unrepresentable flags before reading gigabytes
    return build_unet(load_checkpoint(path), resolved), scheduler_config(resolved)


def load_guided_diffusion_prior(pretrained, options):
    """DiffusionPrior's loader for ``pretrained`` a ``.pt`` file with option ``guided_diffusion`` (its flags):
    ``(UNet2DModel, scheduler config dict)``, with errors that name the options."""
    if options is None:
        raise OptionError(f"DiffusionPrior option 'pretrained': '{pretrained}' is a file, not a diffusers folder. For "
                          "a guided-diffusion (ADM) .pt checkpoint add the option 'guided_diffusion' with its model "
                          "or flags, e.g. guided_diffusion: {model: 256x256_diffusion_uncond}, or convert it once "
                          'with basicsr-diffloss-convert-adm and point pretrained at the folder it writes.')
    if not osp.isfile(pretrained):
        raise FileNotFoundError(f"DiffusionPrior option 'pretrained': '{pretrained}' is not a file; with option "
                                "'guided_diffusion' it must be a guided-diffusion .pt checkpoint.")
    try:
        return load_guided_diffusion(pretrained, **dict(options))
    except ValueError as error:
        raise OptionError(f"DiffusionPrior option 'guided_diffusion' ('{pretrained}'): {error}") from error
