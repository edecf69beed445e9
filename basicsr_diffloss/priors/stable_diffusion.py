"""Loader of Stable Diffusion-family pipeline folders (SD 1.x, SD 2.x, SD-Turbo, SDXL) as latent DiffLoss priors.

A folder as ``StableDiffusionPipeline.save_pretrained`` or ``StableDiffusionXLPipeline.save_pretrained`` writes it:
``model_index.json``, ``unet/`` (UNet2DConditionModel), ``vae/`` (AutoencoderKL), ``scheduler/``, and
``text_encoder/`` + ``tokenizer/`` (SDXL: also ``text_encoder_2/`` + ``tokenizer_2/``). Everything is loaded
strictly from local files. The prompt is encoded once, here, by the pipeline's own ``encode_prompt``; the text
encoders are not kept. Folders whose UNet takes other inputs, and files or folders that are not such pipelines,
are refused with the fix.
"""
import json
import os
from os import path as osp

import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

from ..options import OptionError
from .diffusers_folder import load_strict, saved_scheduler_config
from .latent_encoder import LatentEncoder
from .text_conditioning import TextConditioning

# model_index.json's _class_name -> the family DiffusionPrior loads (img2img folders hold the same components).
PIPELINES = {'StableDiffusionPipeline': 'sd', 'StableDiffusionImg2ImgPipeline': 'sd',
             'StableDiffusionXLPipeline': 'sdxl', 'StableDiffusionXLImg2ImgPipeline': 'sdxl'}
# Pipelines whose UNet takes more than noised latents, by a word of their class name.
OTHER_INPUTS = {'Inpaint': 'an inpainting UNet (9 input channels: latents, mask and masked-image latents)',
                'Depth2Img': 'a depth-to-image UNet (5 input channels: latents and depth)',
                'Upscale': 'an upscaler UNet (noise-level conditioned; 7 input channels for the x4 upscaler)',
                'ControlNet': 'a ControlNet pipeline (its controlnet/ needs a control image DiffLoss does not have)'}
TEXT_ENCODERS = {'sd': (('text_encoder', 'tokenizer'), ), 'sdxl': (('text_encoder', 'tokenizer'),
                                                                    ('text_encoder_2', 'tokenizer_2'))}
EMBEDS_HELP = ("write one with the pipeline's encode_prompt, e.g. safetensors.torch.save_file({'prompt_embeds': "
               "embeds}, 'prompt.safetensors') (SDXL: also 'pooled_prompt_embeds')")


def _model_index(folder):
    with open(osp.join(folder, 'model_index.json')) as file:
        return json.load(file)


def is_latent_pipeline_folder(folder):
    """Whether ``folder`` is a diffusers pipeline folder with a VAE or a text-conditioned UNet (a latent prior)."""
    if not osp.isfile(osp.join(folder, 'model_index.json')):
        return False
    index = _model_index(folder)
    return 'vae' in index or index.get('unet', [None, None])[1] == 'UNet2DConditionModel'


def refuse_non_prior(path):
    """Raise an error naming the fix if ``path`` is a Stable Diffusion single-file checkpoint, a ControlNet or
    IP-adapter folder, or a latent UNet without its pipeline; else return."""
    option = f"DiffusionPrior option 'pretrained': '{path}'"
    if osp.isfile(path):
        if _is_single_file_checkpoint(path):
            raise OptionError(
                f'{option} is a single-file Stable Diffusion checkpoint. DiffusionPrior loads pipeline folders; '
                'convert it once with diffusers, offline given the folder of a pipeline of the same family for its '
                "configs: StableDiffusionPipeline.from_single_file(path, config='path/to/that-pipeline-folder', "
                "local_files_only=True).save_pretrained('path/to/new-folder') (StableDiffusionXLPipeline for "
                'SDXL), and point pretrained at the new folder.')
        return
    if not osp.isdir(path):
        return
    names = set(os.listdir(path))
    config = osp.join(path, 'config.json')
    class_name = None
    if osp.isfile(config):
        with open(config) as file:
            class_name = json.load(file).get('_class_name')
    if class_name == 'ControlNetModel' or 'controlnet' in names:
        raise OptionError(f'{option} is a ControlNet, which steers a UNet with a control image: not a prior. Point '
                          'pretrained at the base pipeline folder (e.g. stable-diffusion-v1-5) instead.')
    if any(name.startswith('ip-adapter') or name.startswith('ip_adapter') for name in names) or (
            'image_encoder' in names and 'unet' not in names):
        raise OptionError(f'{option} holds IP-adapter weights (an image-prompt adapter), which DiffLoss would not '
                          'feed: point pretrained at the base pipeline folder instead.')
    if class_name == 'UNet2DConditionModel':
        raise OptionError(f'{option} is a text-conditioned (latent) UNet alone; DiffLoss also needs its VAE and a '
                          'prompt: point pretrained at the pipeline folder that holds this unet/, with vae/ beside it.')


def _is_single_file_checkpoint(path):
    """A .safetensors or .ckpt file with the original Stable Diffusion key names (model.diffusion_model.*)."""
    if path.endswith('.safetensors'):
        from safetensors import safe_open
        with safe_open(path, 'pt') as file:
            keys = list(file.keys())
    elif path.endswith('.ckpt'):
        checkpoint = torch.load(path, map_location='cpu', mmap=True, weights_only=True)
        keys = list(checkpoint.get('state_dict', checkpoint))
    else:
        return False
    return any(key.startswith('model.diffusion_model.') for key in keys)


def _family(folder, index):
    class_name = index.get('_class_name', '')
    option = f"DiffusionPrior option 'pretrained': '{folder}'"
    for word, what in OTHER_INPUTS.items():
        if word in class_name or word.lower() in index:
            raise OptionError(f'{option} is {class_name}, {what}: DiffLoss feeds a UNet noised latents only. Use the '
                              'base text-to-image pipeline of the same model.')
    if index.get('image_encoder', [None, None])[0] is not None:
        raise OptionError(f'{option} holds an image_encoder (an IP-adapter), which DiffLoss would not feed: save the '
                          'pipeline without it, or point pretrained at the base pipeline folder.')
    if index.get('requires_aesthetics_score'):
        raise OptionError(f'{option} is the SDXL refiner (aesthetic-score conditioned): use the SDXL base pipeline.')
    if class_name not in PIPELINES:
        raise OptionError(f'{option} is a {class_name or "pipeline without _class_name"} folder; latent priors load '
                          f'{sorted(PIPELINES)} folders.')
    for part in ('unet', 'vae'):
        if not osp.isfile(osp.join(folder, part, 'config.json')):
            raise OptionError(f'{option} has no {part}/config.json: a latent prior needs the pipeline\'s {part}/ '
                              f'(save the whole pipeline with save_pretrained).')
    return PIPELINES[class_name]


def _check_unet(folder, unet, encoder, family):
    config, option = unet.config, f"DiffusionPrior option 'pretrained': '{folder}'"
    if config.in_channels != encoder.latent_channels:
        raise OptionError(f'{option}: its UNet takes {config.in_channels} input channels but its VAE gives '
                          f'{encoder.latent_channels}-channel latents (an inpainting, depth or upscaler UNet?); '
                          'DiffLoss feeds noised latents only: use the base text-to-image pipeline.')
    if config.class_embed_type is not None or config.num_class_embeds is not None:
        raise OptionError(f'{option}: its UNet is class- or noise-level-conditioned ({config.class_embed_type}); '
                          'DiffLoss gives it no labels: use a text-to-image pipeline.')
    expected = 'text_time' if family == 'sdxl' else None
    if config.addition_embed_type != expected:
        raise OptionError(f"{option}: its UNet's addition_embed_type is {config.addition_embed_type!r}, not "
                          f'{expected!r} as a {family.upper()} UNet has; the folder does not match its model_index.')


def _prompt_embeds_file(path, family, folder):
    from safetensors.torch import load_file
    if not osp.isfile(path):
        raise FileNotFoundError(f"DiffusionPrior option 'prompt_embeds': '{path}' is not a file; {EMBEDS_HELP}.")
    tensors = load_file(path)
    wanted = ['prompt_embeds'] + (['pooled_prompt_embeds'] if family == 'sdxl' else [])
    missing = [key for key in wanted if key not in tensors]
    if missing:
        raise OptionError(f"DiffusionPrior option 'prompt_embeds': '{path}' lacks {missing} (it holds "
                          f'{sorted(tensors)}), which the {family.upper()} UNet of \'{folder}\' needs; {EMBEDS_HELP}.')
    return TextConditioning(*(tensors[key] for key in wanted))


def _encode_prompt(folder, index, family, prompt, unet, vae):
    """Encode ``prompt`` with the folder's text encoders through the pipeline's own ``encode_prompt``."""
    try:
        import transformers
    except ImportError as error:
        raise OptionError("DiffusionPrior option 'prompt': encoding it needs the transformers package (pip install "
                          "'basicsr-diffloss[stable-diffusion]'), or give option 'prompt_embeds'.") from error
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
    parts = {}
    for encoder_name, tokenizer_name in TEXT_ENCODERS[family]:
        for name in (encoder_name, tokenizer_name):
            if not osp.isdir(osp.join(folder, name)) or index.get(name, [None, None])[1] is None:
                raise OptionError(f"DiffusionPrior option 'pretrained': '{folder}' has no {name}/ to encode the prompt "
                                  f"with: give option 'prompt_embeds' (a .safetensors file; {EMBEDS_HELP}).")
        encoder_class = getattr(transformers, index[encoder_name][1])
        parts[encoder_name] = load_strict(encoder_class, osp.join(folder, encoder_name), f'the {encoder_name}')
        parts[tokenizer_name] = transformers.AutoTokenizer.from_pretrained(osp.join(folder, tokenizer_name),
                                                                           local_files_only=True)
    scheduler = DDPMScheduler(steps_offset=1, clip_sample=False)  # unused by encode_prompt; set as pipelines want
    transformers.utils.logging.disable_progress_bar()
    with torch.no_grad():
        if family == 'sd':
            pipeline = StableDiffusionPipeline(vae=vae, unet=unet, scheduler=scheduler, safety_checker=None,
                                               feature_extractor=None, requires_safety_checker=False, **parts)
            embeds, _ = pipeline.encode_prompt(prompt, 'cpu', 1, False)
            return TextConditioning(embeds)
        pipeline = StableDiffusionXLPipeline(vae=vae, unet=unet, scheduler=scheduler, **parts)
        embeds, _, pooled, _ = pipeline.encode_prompt(prompt, device='cpu', num_images_per_prompt=1,
                                                      do_classifier_free_guidance=False)
        return TextConditioning(embeds, pooled)


def _check_conditioning(folder, conditioning, unet):
    config = unet.config
    dim = conditioning.prompt_embeds.shape[-1]
    if dim != config.cross_attention_dim:
        raise OptionError(f"DiffusionPrior: the prompt embeddings have width {dim} but the UNet of '{folder}' "
                          f'attends to {config.cross_attention_dim}: they come from another model\'s text encoder.')
    if conditioning.sdxl:
        width = conditioning.pooled_prompt_embeds.shape[-1] + 6 * config.addition_time_embed_dim
        if width != config.projection_class_embeddings_input_dim:
            raise OptionError(f"DiffusionPrior: the pooled prompt embedding and time ids give {width} features but "
                              f"the UNet of '{folder}' takes {config.projection_class_embeddings_input_dim}.")


def load_stable_diffusion_folder(folder, prompt=None, prompt_embeds=None):
    """``(UNet2DConditionModel, scheduler config dict, LatentEncoder, TextConditioning)`` of a pipeline folder.

    Args:
        folder (str): the pipeline folder.
        prompt (str | None): encoded once with the folder's text encoder(s). Default: the empty prompt.
        prompt_embeds (str | None): a .safetensors file with ``prompt_embeds`` (SDXL: and ``pooled_prompt_embeds``)
            used instead, for folders without text encoders.
    """
    index = _model_index(folder)
    family = _family(folder, index)
    if prompt is not None and prompt_embeds is not None:
        raise OptionError("DiffusionPrior options 'prompt' and 'prompt_embeds' both give the conditioning: keep one.")
    encoder = LatentEncoder(load_strict(AutoencoderKL, osp.join(folder, 'vae'), 'the VAE'))
    unet = load_strict(UNet2DConditionModel, osp.join(folder, 'unet'))
    _check_unet(folder, unet, encoder, family)
    if prompt_embeds is not None:
        conditioning = _prompt_embeds_file(prompt_embeds, family, folder)
    else:
        conditioning = _encode_prompt(folder, index, family, '' if prompt is None else str(prompt), unet,
                                      encoder.vae)
    _check_conditioning(folder, conditioning, unet)
    return unet, saved_scheduler_config(osp.join(folder, 'scheduler')), encoder, conditioning
