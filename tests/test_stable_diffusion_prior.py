"""Stable Diffusion-family pipeline folders as latent priors: equal to diffusers' own pipeline, gradients reach the
restorer through the VAE encoder, the strength calibration works on them, and bad folders are refused."""
import json
import shutil
from os import path as osp

import pytest
import torch
import torch.nn.functional as F
from diffusers import ControlNetModel
from safetensors.torch import save_file

from basicsr_diffloss.losses import DiffLoss
from basicsr_diffloss.priors import DiffusionPrior
from stable_diffusion_stand_ins import FAMILIES, tiny_pipeline, tiny_unet


@pytest.fixture(scope='module')
def pipelines(tmp_path_factory):
    """``{family: (folder, pipeline)}`` of tiny random pipelines saved with save_pretrained."""
    root = tmp_path_factory.mktemp('pipelines')
    return {family: (str(root / family), tiny_pipeline(family, str(root / family))) for family in FAMILIES}


def relative_error(value, reference):
    return ((value - reference).norm() / reference.norm()).item()


def pipeline_reference(pipeline, family, images, noise, t, prompt=''):
    """eps and h from the pipeline's own modules: vae.encode(...).latent_dist.mean * scaling_factor, its encoded
    prompt, its UNet (SDXL: with the pipeline's own time ids), v converted to eps by the DDPM identity."""
    with torch.no_grad():
        latents = pipeline.vae.encode(images * 2 - 1).latent_dist.mean * pipeline.vae.config.scaling_factor
        abar = pipeline.scheduler.alphas_cumprod[t].view(-1, 1, 1, 1).float()
        z_t = abar.sqrt() * latents + (1 - abar).sqrt() * noise
        batch, size = len(images), tuple(images.shape[-2:])
        if family == 'sdxl':
            embeds, _, pooled, _ = pipeline.encode_prompt(prompt, device='cpu', num_images_per_prompt=1,
                                                          do_classifier_free_guidance=False)
            time_ids = pipeline._get_add_time_ids(size, (0, 0), size, dtype=embeds.dtype,
                                                  text_encoder_projection_dim=pipeline.text_encoder_2.config
                                                  .projection_dim)
            kwargs = dict(added_cond_kwargs=dict(text_embeds=pooled.expand(batch, -1),
                                                 time_ids=time_ids.expand(batch, -1)))
        else:
            embeds = pipeline.encode_prompt(prompt, 'cpu', 1, False)[0]
            kwargs = {}
        kept = []
        hook = pipeline.unet.mid_block.register_forward_hook(lambda module, inputs, output: kept.append(output))
        output = pipeline.unet(z_t, t, encoder_hidden_states=embeds.expand(batch, -1, -1), **kwargs).sample
        hook.remove()
        if pipeline.scheduler.config.prediction_type == 'v_prediction':
            output = abar.sqrt() * output + (1 - abar).sqrt() * z_t
    return latents, z_t, output, kept[0]


@pytest.mark.parametrize('family', FAMILIES)
def test_latents_eps_and_h_equal_the_pipelines_own(pipelines, family):
    folder, pipeline = pipelines[family]
    prior = DiffusionPrior(pretrained=folder, dtype='fp32')
    assert (prior.in_channels, prior.latent_channels, prior.size_factor) == (3, 4, 4)  # VAE 2 x UNet 2
    assert prior.prediction_type == ('v_prediction' if family == 'sd2' else 'epsilon')
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(2, 3, 32, 24, generator=generator)
    noise = torch.randn(2, 4, 16, 12, generator=generator)
    t = torch.tensor([150, 700])
    latents, z_t, eps, h = pipeline_reference(pipeline, family, images, noise, t)
    ours_latents = prior.to_input(images, (0, 1))
    ours_eps, ours_h = prior(prior.add_noise(ours_latents, noise, t), t)
    errors = {name: relative_error(ours, reference) for name, ours, reference in
              (('latents', ours_latents, latents), ('eps', ours_eps, eps), ('h', ours_h, h))}
    print(f'\n{family}: relative error {errors}')
    assert all(error <= 1e-5 for error in errors.values()), errors


def test_a_prompt_is_encoded_once_by_the_folders_text_encoder(pipelines):
    folder, pipeline = pipelines['sd1']
    prior = DiffusionPrior(pretrained=folder, prompt='a photo', dtype='fp32')
    reference = pipeline.encode_prompt('a photo', 'cpu', 1, False)[0]
    assert relative_error(prior.conditioning.prompt_embeds, reference) <= 1e-6
    assert relative_error(prior.conditioning.prompt_embeds,
                          DiffusionPrior(pretrained=folder).conditioning.prompt_embeds) > 1e-3
    assert not any('text' in name for name, _ in prior.named_modules())  # the text encoders are not kept


def test_prompt_embeds_file_replaces_missing_text_encoders(pipelines, tmp_path):
    folder, pipeline = pipelines['sdxl']
    bare = tmp_path / 'sdxl_without_text_encoders'
    shutil.copytree(folder, bare)
    for name in ('text_encoder', 'tokenizer', 'text_encoder_2', 'tokenizer_2'):
        shutil.rmtree(bare / name)
    with pytest.raises(ValueError, match=r"has no text_encoder/ to encode the prompt with: give option 'prompt_emb"):
        DiffusionPrior(pretrained=str(bare))
    embeds, _, pooled, _ = pipeline.encode_prompt('', device='cpu', num_images_per_prompt=1,
                                                  do_classifier_free_guidance=False)
    save_file({'prompt_embeds': embeds.contiguous(), 'pooled_prompt_embeds': pooled.contiguous()},
              str(tmp_path / 'empty.safetensors'))
    from_file = DiffusionPrior(pretrained=str(bare), prompt_embeds=str(tmp_path / 'empty.safetensors'))
    encoded = DiffusionPrior(pretrained=folder)
    torch.testing.assert_close(from_file.conditioning.pooled_prompt_embeds, encoded.conditioning.pooled_prompt_embeds)
    save_file({'prompt_embeds': embeds.contiguous()}, str(tmp_path / 'no_pooled.safetensors'))
    with pytest.raises(ValueError, match=r"lacks \['pooled_prompt_embeds'\]"):
        DiffusionPrior(pretrained=str(bare), prompt_embeds=str(tmp_path / 'no_pooled.safetensors'))


@pytest.mark.parametrize('gradient', ['score_difference', 'backprop'])
def test_the_gradient_reaches_the_restorer_through_the_vae_encoder(pipelines, gradient):
    folder, _ = pipelines['sd1']
    restorer = torch.nn.Conv2d(3, 3, 3, padding=1)
    loss = DiffLoss(prior=dict(type='DiffusionPrior', pretrained=folder), gradient=gradient, eps_weight=1.0,
                    h_weight=1.0, crop_size=16, seed=0)
    gt = torch.rand(2, 3, 24, 24, generator=torch.Generator().manual_seed(2))
    terms = loss.terms(restorer(gt).clamp(0, 1), gt)
    assert set(terms) == {'l_diff_eps', 'l_diff_h'}
    norms = {name: torch.autograd.grad(value, restorer.weight, retain_graph=True)[0].norm().item()
             for name, value in terms.items()}
    print(f'\n{gradient}: gradient norms on the restorer {norms}')
    assert all(norm > 0 and norm == norm for norm in norms.values())


def test_strength_calibration_reaches_the_ratio_on_a_latent_prior(pipelines):
    folder, _ = pipelines['sdxl']
    requested = 0.5
    loss = DiffLoss(prior=dict(type='DiffusionPrior', pretrained=folder), strength={'eps': requested},
                    strength_iters=20, crop_size=16, t_range=[300, 700], seed=0)
    generator = torch.Generator().manual_seed(3)
    terms_norm, l1_norm = 0.0, 0.0
    for index in range(40):
        gt = torch.rand(4, 3, 16, 16, generator=generator)
        pred = (gt + 0.1 * torch.randn(gt.shape, generator=generator)).clamp(0.01, 0.99).requires_grad_(True)
        term = loss.terms(pred, gt)['l_diff_eps']
        if index >= 20:  # after the calibration, on other batches
            terms_norm += torch.autograd.grad(term, pred)[0].norm().item()
            l1_norm += torch.autograd.grad(F.l1_loss(pred, gt), pred)[0].norm().item()
    weight = loss.strength.weights['l_diff_eps']
    print(f'\nSDXL-shaped: eps weight {weight:.4g}, ratio reached {terms_norm / l1_norm:.4f} (requested {requested})')
    assert abs(terms_norm / l1_norm / requested - 1) < 0.1


def test_crop_size_must_be_a_multiple_of_the_vae_times_the_unet_factor(pipelines):
    folder, _ = pipelines['sd1']
    with pytest.raises(ValueError, match=r"'crop_size': 18 is not a multiple of the prior's size factor 4 \(its VAE's "
                                         r"2 x its UNet's 2; crop_size is in pixels\); use 16 or 20"):
        DiffLoss(prior=dict(type='DiffusionPrior', pretrained=folder), crop_size=18)


def _remove(folder, name):
    shutil.rmtree(osp.join(folder, name))


def _set_class(folder, class_name, **entries):
    path = osp.join(folder, 'model_index.json')
    index = json.load(open(path))
    index.update(_class_name=class_name, **entries)
    json.dump(index, open(path, 'w'))


def _inpainting(folder):
    tiny_pipeline('sd1', folder, unet=tiny_unet('sd1', in_channels=9))
    _set_class(folder, 'StableDiffusionInpaintPipeline')


def _inpainting_unet_in_a_text_to_image_folder(folder):
    tiny_pipeline('sd1', folder, unet=tiny_unet('sd1', in_channels=9))


def _depth(folder):
    tiny_pipeline('sd1', folder, unet=tiny_unet('sd1', in_channels=5))
    _set_class(folder, 'StableDiffusionDepth2ImgPipeline')


def _controlnet(folder):
    torch.manual_seed(0)
    ControlNetModel(block_out_channels=(32, 64), down_block_types=('CrossAttnDownBlock2D', 'DownBlock2D'),
                    cross_attention_dim=32, norm_num_groups=8, layers_per_block=1, attention_head_dim=8,
                    conditioning_embedding_out_channels=(8, 16)).save_pretrained(folder)


def _ip_adapter(folder):
    import os
    os.makedirs(osp.join(folder, 'image_encoder'))
    save_file({'image_proj.proj.weight': torch.zeros(4, 4)}, osp.join(folder, 'ip-adapter_sd15.safetensors'))


def _unet_alone(folder):
    tiny_unet('sd1').save_pretrained(folder)


BAD_FOLDERS = {
    'no vae': (lambda folder: (tiny_pipeline('sd1', folder), _remove(folder, 'vae')),
               r"has no vae/config.json: a latent prior needs the pipeline's vae/"),
    'no unet': (lambda folder: (tiny_pipeline('sd1', folder), _remove(folder, 'unet')),
                r"has no unet/config.json"),
    'no text encoder': (lambda folder: (tiny_pipeline('sd1', folder), _remove(folder, 'text_encoder')),
                        r"has no text_encoder/ to encode the prompt with: give option 'prompt_embeds'"),
    'inpainting pipeline': (_inpainting, r'is StableDiffusionInpaintPipeline, an inpainting UNet \(9 input channels'),
    'inpainting UNet': (_inpainting_unet_in_a_text_to_image_folder,
                        r'its UNet takes 9 input channels but its VAE gives 4-channel latents'),
    'depth pipeline': (_depth, r'is StableDiffusionDepth2ImgPipeline, a depth-to-image UNet'),
    'controlnet': (_controlnet, r'is a ControlNet, which steers a UNet with a control image: not a prior'),
    'ip-adapter': (_ip_adapter, r'holds IP-adapter weights'),
    'unet alone': (_unet_alone, r'is a text-conditioned \(latent\) UNet alone; DiffLoss also needs its VAE'),
}


@pytest.mark.parametrize('kind', list(BAD_FOLDERS))
def test_bad_folders_are_refused_with_the_fix(tmp_path, kind):
    make, message = BAD_FOLDERS[kind]
    folder = str(tmp_path / 'folder')
    make(folder)
    with pytest.raises(ValueError, match=message) as error:
        DiffusionPrior(pretrained=folder)
    print(f'\n{kind}: {error.value}')


def test_a_single_file_checkpoint_is_refused_with_the_conversion(tmp_path):
    path = str(tmp_path / 'v1-5-pruned.safetensors')
    save_file({'model.diffusion_model.input_blocks.0.0.weight': torch.zeros(4, 4, 3, 3),
               'first_stage_model.encoder.conv_in.weight': torch.zeros(8, 3, 3, 3)}, path)
    with pytest.raises(ValueError, match=r'single-file Stable Diffusion checkpoint.*from_single_file\(path, '
                                         r"config='path/to/that-pipeline-folder', local_files_only=True\)"):
        DiffusionPrior(pretrained=path)


def test_prompt_options_are_refused_for_a_pixel_prior(tiny_prior_folder):
    with pytest.raises(ValueError, match=r"options \['prompt'\] condition a Stable Diffusion-family \(latent\) prior"):
        DiffusionPrior(pretrained=str(tiny_prior_folder), prompt='a photo')


@pytest.mark.parametrize('execution', [dict(gradient_checkpointing=True), dict(channels_last=True),
                                       dict(dtype='bf16')])
def test_execution_options_apply_to_the_unet_and_the_vae_encoder(pipelines, execution):
    folder, _ = pipelines['sd1']
    generator = torch.Generator().manual_seed(4)
    gt = torch.rand(2, 3, 16, 16, generator=generator)
    pred = (gt + 0.1 * torch.randn(gt.shape, generator=generator)).clamp(0.01, 0.99)
    results = []
    for options in (dict(dtype='fp32'), dict(dict(dtype='fp32'), **execution)):
        prior = DiffusionPrior(pretrained=folder, **options)
        loss = DiffLoss(prior=prior, gradient='backprop', eps_weight=1.0, h_weight=1.0, seed=0)
        leaf = pred.clone().requires_grad_(True)
        value = loss(leaf, gt)
        results.append((value.detach(), torch.autograd.grad(value, leaf)[0]))
    if 'gradient_checkpointing' in execution:
        assert prior.unet.is_gradient_checkpointing and prior.encoder.vae.encoder.gradient_checkpointing
    if 'dtype' in execution:
        assert next(prior.encoder.parameters()).dtype == torch.bfloat16 == next(prior.unet.parameters()).dtype
    tolerance = dict(rtol=0.05, atol=1e-4) if 'dtype' in execution else dict(rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(results[1], results[0], **tolerance)
