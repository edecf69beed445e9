"""Train a diffusion prior (a diffusers UNet2DModel) with the DDPM eps objective, through BasicSR's pipeline."""
import os
from collections import OrderedDict
from os import path as osp

import torch
from basicsr.models.sr_model import SRModel
from basicsr.utils import get_root_logger
from basicsr.utils.dist_util import master_only
from basicsr.utils.registry import MODEL_REGISTRY
from diffusers import DDPMScheduler

from ..options import choice
from .exact_resume import ReliableTrainingMixin

DEFAULT_VAL_TIMESTEPS = (50, 100, 250, 500, 750)
AUTOCAST_DTYPES = {'bf16': torch.bfloat16}


@MODEL_REGISTRY.register()
class DiffusionPriorModel(ReliableTrainingMixin, SRModel):
    """Trains ``network_g`` (``type: UNet2DModel`` plus its diffusers keyword arguments) as a noise predictor.

    Each step takes clean crops ``gt`` in [0, 1] from the train dataset, maps them to [-1, 1], draws one t per
    crop uniformly over the schedule and one noise, and applies ``train.pixel_opt`` (use ``MSELoss``: the DDPM eps
    objective) between the predicted and the true noise. Everything else is SRModel's: ``train.ema_decay``
    (EMA weights are the ones exported), optimizers, schedulers, ``path.pretrain_network_g``, resume (made atomic
    and exact by ReliableTrainingMixin).

    Options beyond SRModel's:
        noise_schedule (dict): DDPMScheduler arguments (top level of the option file). Default: DDPM linear,
            1000 steps, betas 1e-4 to 0.02, eps prediction.
        val.timesteps (list[int]): the t at which validation reports the denoising loss ``l_eps_t<t>`` on the val
            crops, with noise fixed per image so that values are comparable across iterations.
            Default: [50, 100, 250, 500, 750]. Their mean is ``l_eps_mean``.
        train.autocast (str): ``bf16`` runs the UNet's training forward under ``torch.autocast`` in bfloat16 (the
            weights, the optimizer and the loss stay fp32): about twice the speed on a GPU or a CPU with AMX, many
            times slower on a CPU without bf16 arithmetic. Validation always runs in fp32. Default: none (fp32).

    Every checkpoint also writes ``models/prior_<iter>/`` (``prior_latest/`` at the end): a diffusers folder
    (config.json, diffusion_pytorch_model.safetensors, scheduler_config.json) that ``DiffusionPrior(pretrained=...)``
    loads unchanged.
    """

    def __init__(self, opt):
        self.noise_scheduler = DDPMScheduler(**opt.get('noise_schedule', {}))
        if self.noise_scheduler.config.prediction_type != 'epsilon':
            raise ValueError("DiffusionPriorModel trains eps prediction only: set noise_schedule.prediction_type to "
                             "'epsilon' or leave it out.")
        train_opt = opt.get('train') or {}
        autocast = train_opt.get('autocast')
        if autocast is not None:
            choice('DiffusionPriorModel', 'train.autocast', autocast, AUTOCAST_DTYPES,
                   'remove the key to train in fp32.')
        self.autocast_dtype = AUTOCAST_DTYPES.get(autocast)
        super().__init__(opt)

    def feed_data(self, data):
        self.gt = data['gt'].to(self.device) * 2 - 1

    def _predict_noise(self, net, x_t, t):
        return net(x_t, t, return_dict=False)[0]

    def optimize_parameters(self, current_iter):
        self.optimizer_g.zero_grad()
        t = torch.randint(0, self.noise_scheduler.config.num_train_timesteps, (self.gt.shape[0], ), device=self.device)
        noise = torch.randn_like(self.gt)
        x_t = self.noise_scheduler.add_noise(self.gt, noise, t)
        with torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
            prediction = self._predict_noise(self.net_g, x_t, t)
        l_eps = self.cri_pix(prediction.float(), noise)
        l_eps.backward()
        self.optimizer_g.step()
        self.log_dict = self.reduce_loss_dict(OrderedDict(l_eps=l_eps))
        if self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)

    def _eval_network(self):
        return self.net_g_ema if hasattr(self, 'net_g_ema') else self.get_bare_model(self.net_g)

    @torch.no_grad()
    def denoising_losses(self, dataloader, timesteps):
        """Mean eps-prediction MSE at each t over the loader's crops, with noise seeded by the image index."""
        net = self._eval_network()
        was_training = net.training
        net.eval()
        totals = torch.zeros(len(timesteps), dtype=torch.float64)
        count = 0
        for index, data in enumerate(dataloader):
            self.feed_data(data)
            generator = torch.Generator().manual_seed(index)
            for k, step in enumerate(timesteps):
                noise = torch.randn(self.gt.shape, generator=generator).to(self.device)
                t = torch.full((self.gt.shape[0], ), int(step), device=self.device)
                x_t = self.noise_scheduler.add_noise(self.gt, noise, t)
                error = (self._predict_noise(net, x_t, t) - noise).pow(2).mean(dim=(1, 2, 3))
                totals[k] += error.sum().item()
            count += self.gt.shape[0]
        net.train(was_training)
        return OrderedDict((f'l_eps_t{step}', total / count) for step, total in zip(timesteps, totals.tolist()))

    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img):
        timesteps = self.opt['val'].get('timesteps', DEFAULT_VAL_TIMESTEPS)
        results = self.denoising_losses(dataloader, timesteps)
        results['l_eps_mean'] = sum(results.values()) / len(results)
        self.metric_results = results
        dataset_name = dataloader.dataset.opt['name']
        get_root_logger().info(f'Validation {dataset_name} (denoising loss, lower is better)\n' +
                               ''.join(f'\t # {name}: {value:.5f}\n' for name, value in results.items()))
        if tb_logger:
            for name, value in results.items():
                tb_logger.add_scalar(f'metrics/{dataset_name}/{name}', value, current_iter)

    def save(self, epoch, current_iter):
        super().save(epoch, current_iter)
        self.export_prior(current_iter)

    @master_only
    def export_prior(self, current_iter):
        """Write the (EMA) UNet and its noise schedule as a diffusers folder under ``models/``."""
        label = 'latest' if current_iter == -1 else current_iter
        folder = osp.join(self.opt['path']['models'], f'prior_{label}')
        os.makedirs(folder, exist_ok=True)
        self._eval_network().save_pretrained(folder, safe_serialization=True)
        self.noise_scheduler.save_pretrained(folder)
