"""Loader of priors saved by diffusers: a ``UNet2DModel`` folder, or a pipeline folder with ``unet/`` (DDPM)."""
import os
from os import path as osp

from diffusers import DDPMScheduler, UNet2DModel


def _prior_folders(pretrained):
    """The UNet folder and the folder that may hold ``scheduler_config.json``, for a diffusers folder or pipeline."""
    if not osp.isdir(pretrained):
        raise FileNotFoundError(f"DiffusionPrior option 'pretrained': '{pretrained}' is not a folder. "
                                'Give a local diffusers UNet folder (config.json + diffusion_pytorch_model.safetensors) '
                                'or a diffusers pipeline folder with a unet/ subfolder.')
    if osp.isfile(osp.join(pretrained, 'unet', 'config.json')):  # pipeline layout, e.g. google/ddpm-*-256
        return osp.join(pretrained, 'unet'), osp.join(pretrained, 'scheduler')
    if not osp.isfile(osp.join(pretrained, 'config.json')):
        raise FileNotFoundError(f"DiffusionPrior option 'pretrained': '{pretrained}' has no config.json "
                                f"(found: {sorted(os.listdir(pretrained))[:10]}). Point it at the folder written by "
                                "UNet2DModel.save_pretrained, or at a pipeline folder holding unet/config.json.")
    return pretrained, pretrained


def load_strict(model_class, folder, what='the UNet'):
    """Load a diffusers or transformers model class from a local folder; any missing, unexpected or mismatched key is
    an error naming DiffusionPrior's option ``pretrained``."""
    try:
        model, info = model_class.from_pretrained(
            folder, output_loading_info=True, local_files_only=True, low_cpu_mem_usage=False)
    except (OSError, RuntimeError, ValueError) as error:
        raise ValueError(f"DiffusionPrior option 'pretrained': cannot load {what} in '{folder}': {error}\nCheck that "
                         'the weights file is complete and that config.json is the one saved with it.') from error
    problems = {kind: keys for kind, keys in info.items() if keys}
    if problems:
        raise ValueError(f"DiffusionPrior option 'pretrained': the weights of {what} in '{folder}' do not match its "
                         f'config.json: {problems}. Use the config.json that was saved with these weights.')
    return model


def load_unet_strict(folder):
    """Load a diffusers UNet2DModel from a local folder, strictly (``load_strict``)."""
    return load_strict(UNet2DModel, folder)


def saved_scheduler_config(folder):
    """The scheduler config dict saved in ``folder`` (``scheduler_config.json``), empty where there is none."""
    if not osp.isfile(osp.join(folder, 'scheduler_config.json')):
        return {}
    return dict(DDPMScheduler.load_config(folder))


def load_diffusers_folder(pretrained):
    """``(UNet2DModel, scheduler config dict)`` of a diffusers folder; the dict is empty without a scheduler config."""
    unet_folder, scheduler_folder = _prior_folders(pretrained)
    unet = load_unet_strict(unet_folder)
    return unet, saved_scheduler_config(scheduler_folder)
