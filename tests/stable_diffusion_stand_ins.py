"""Tiny random Stable Diffusion-family pipelines, built from diffusers' and transformers' own classes with the real
block types and saved with ``save_pretrained``: stand-ins for SD 1.x (eps), SD 2.x (v prediction, linear
projections) and SDXL (two text encoders, pooled embedding, time ids) folders, whose weights cannot be downloaded."""
import json
import os
import tempfile
from os import path as osp

import torch
from diffusers import (AutoencoderKL, EulerDiscreteScheduler, PNDMScheduler, StableDiffusionPipeline,
                       StableDiffusionXLPipeline, UNet2DConditionModel)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

FAMILIES = ('sd1', 'sd2', 'sdxl')
LETTERS = [chr(code) for code in range(ord('a'), ord('z') + 1)]


def tiny_tokenizer(folder):
    """A CLIP tokenizer over single letters (no merges): enough for short prompts."""
    os.makedirs(folder, exist_ok=True)
    vocab = {'<|startoftext|>': 0, '<|endoftext|>': 1}
    for token in LETTERS + [letter + '</w>' for letter in LETTERS]:
        vocab[token] = len(vocab)
    with open(osp.join(folder, 'vocab.json'), 'w') as file:
        json.dump(vocab, file)
    with open(osp.join(folder, 'merges.txt'), 'w') as file:
        file.write('#version: 0.2\n')
    return CLIPTokenizer(osp.join(folder, 'vocab.json'), osp.join(folder, 'merges.txt'), model_max_length=77)


def _text_config(tokenizer):
    """A 2-layer CLIP text encoder of width 32 (SD 1.x/2.x: its hidden states; SDXL: both encoders, 32 + 32)."""
    return CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=4, max_position_embeddings=77, projection_dim=32, bos_token_id=0,
                          eos_token_id=1, pad_token_id=1, hidden_act='gelu')


def tiny_vae():
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=('DownEncoderBlock2D', ) * 2,
                         up_block_types=('UpDecoderBlock2D', ) * 2, block_out_channels=(8, 16), latent_channels=4,
                         norm_num_groups=8, sample_size=32)


def tiny_unet(family, in_channels=4):
    """UNet2DConditionModel of the family's kind: 2 levels (size factor 2), cross-attention blocks."""
    common = dict(sample_size=16, in_channels=in_channels, out_channels=4, block_out_channels=(32, 64),
                  layers_per_block=1, norm_num_groups=8)
    if family == 'sdxl':
        return UNet2DConditionModel(**common, down_block_types=('DownBlock2D', 'CrossAttnDownBlock2D'),
                                    up_block_types=('CrossAttnUpBlock2D', 'UpBlock2D'), cross_attention_dim=64,
                                    attention_head_dim=(2, 4), use_linear_projection=True,
                                    addition_embed_type='text_time', addition_time_embed_dim=8,
                                    projection_class_embeddings_input_dim=6 * 8 + 32)
    return UNet2DConditionModel(**common, down_block_types=('CrossAttnDownBlock2D', 'DownBlock2D'),
                                up_block_types=('UpBlock2D', 'CrossAttnUpBlock2D'), cross_attention_dim=32,
                                attention_head_dim=8 if family == 'sd1' else (2, 4),
                                use_linear_projection=family == 'sd2')


def tiny_pipeline(family, folder=None, seed=0, unet=None, prediction_type=None):
    """A random pipeline of ``family`` (``sd1``, ``sd2``, ``sdxl``), saved to ``folder`` when given; its
    ``prediction_type`` defaults to the family's (eps; v for ``sd2``, as SD 2.x at 768 px)."""
    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer(tempfile.mkdtemp())
    unet = unet or tiny_unet(family)
    if family == 'sdxl':
        pipeline = StableDiffusionXLPipeline(
            vae=tiny_vae(), unet=unet, scheduler=EulerDiscreteScheduler(beta_schedule='scaled_linear',
                                                                        beta_start=0.00085, beta_end=0.012),
            text_encoder=CLIPTextModel(_text_config(tokenizer)), tokenizer=tokenizer,
            text_encoder_2=CLIPTextModelWithProjection(_text_config(tokenizer)), tokenizer_2=tokenizer)
    else:
        prediction_type = prediction_type or ('epsilon' if family == 'sd1' else 'v_prediction')
        scheduler = PNDMScheduler(beta_schedule='scaled_linear', beta_start=0.00085, beta_end=0.012,
                                  skip_prk_steps=True, prediction_type=prediction_type)
        pipeline = StableDiffusionPipeline(vae=tiny_vae(), unet=unet, scheduler=scheduler,
                                           text_encoder=CLIPTextModel(_text_config(tokenizer)),
                                           tokenizer=tokenizer, safety_checker=None, feature_extractor=None,
                                           requires_safety_checker=False)
    pipeline.set_progress_bar_config(disable=True)
    if folder is not None:
        pipeline.save_pretrained(folder)
    return pipeline
