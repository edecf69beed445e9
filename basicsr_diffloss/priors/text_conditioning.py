"""TextConditioning: a prompt's embeddings, encoded once, as the keyword arguments of a text-conditioned UNet call."""
import torch
from torch import nn


class TextConditioning(nn.Module):
    """The constant text conditioning of a Stable Diffusion-family UNet (buffers, so they move with the prior).

    Args:
        prompt_embeds (Tensor): (1, tokens, dim) or (tokens, dim), the UNet's ``encoder_hidden_states``.
        pooled_prompt_embeds (Tensor | None): (1, dim) or (dim, ), SDXL's pooled embedding (``text_embeds``); with
            it, each call also gets SDXL's ``time_ids`` for the size it is given (original size = target size = that
            size, crop corner (0, 0)).
    """

    def __init__(self, prompt_embeds, pooled_prompt_embeds=None):
        super().__init__()
        prompt_embeds = prompt_embeds.detach().float()
        self.register_buffer('prompt_embeds', prompt_embeds[None] if prompt_embeds.dim() == 2 else prompt_embeds)
        self.sdxl = pooled_prompt_embeds is not None
        if self.sdxl:
            pooled = pooled_prompt_embeds.detach().float()
            self.register_buffer('pooled_prompt_embeds', pooled[None] if pooled.dim() == 1 else pooled)

    def unet_kwargs(self, batch, image_size, dtype):
        """The conditioning keyword arguments for ``batch`` inputs of ``image_size`` (h, w) pixels, in ``dtype``."""
        # repeated, not expanded: a stride-0 batch sends CPU bf16 matmuls down a slow path (SDXL's step 7x slower)
        kwargs = dict(encoder_hidden_states=self.prompt_embeds.to(dtype).repeat(batch, 1, 1))
        if self.sdxl:
            height, width = image_size
            time_ids = torch.tensor([height, width, 0, 0, height, width], dtype=dtype,
                                    device=self.prompt_embeds.device)
            kwargs['added_cond_kwargs'] = dict(text_embeds=self.pooled_prompt_embeds.to(dtype).repeat(batch, 1),
                                               time_ids=time_ids.repeat(batch, 1))
        return kwargs
