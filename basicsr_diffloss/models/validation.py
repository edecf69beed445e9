"""SRModel's validation with NaN-aware metric means, the iteration in the log, and the prior diagnostics."""
import math
from collections import defaultdict
from os import path as osp

import torch
from basicsr.metrics import calculate_metric
from basicsr.utils import get_root_logger, imwrite, tensor2img
from tqdm import tqdm

from ..metrics import check_metric_options
from .prior_diagnostics import PriorDiagnostics


class ValidationMixin:
    """Validation of a BasicSR paired-restoration model (SRModel and its subclasses) that:

    - checks ``val.metrics`` when the model is built (``check_metric_options``): unknown metric types, missing
      options and missing LPIPS/DISTS weights fail before training starts, not at the first validation;
    - averages each metric over the images where it could be computed: a metric returns NaN on an image it cannot
      measure (e.g. NIQE below 192 px), that image is left out of the mean, and the log says so, e.g.
      ``# niqe: 6.9040 (computed on 3 of 5 images)``; NaN when no image could be measured. ``self.metric_counts``
      holds (computed, total) per metric;
    - names the iteration in the log header (``Validation <set>, iter <N>``), for the compare report's curves;
    - draws ``val.prior_diagnostics`` (training only, with ``train.diffusion_opt``): see PriorDiagnostics;
    - feeds the validation images with ``is_train`` off, as Real-ESRGAN's models do (their ``feed_data`` would
      synthesise degradations otherwise); the model's own ``feed_data`` and ``test`` are used (SwinIRModel's
      test-time padding, ...).

    Option ``val.prior_diagnostics`` (dict, default: off): ``timesteps`` ([100, 400, 700]), ``every`` (1),
    ``max_images`` (4), ``crop_size`` (256), ``seed`` (0). The PNGs are written to
    ``experiments/<name>/visualization/prior/<dataset>/<image>_<iter>.png``. Other ``val`` options are SRModel's
    (``save_img``, ``suffix``, ``pbar``, ``metrics``).
    """

    def __init__(self, opt):
        check_metric_options(opt)
        super().__init__(opt)
        self.metric_counts = {}
        self.prior_diagnostics = None
        self._validations = defaultdict(int)
        diagnostics_opt = (opt.get('val') or {}).get('prior_diagnostics')
        if diagnostics_opt and self.is_train:
            if getattr(self, 'cri_diff', None) is None:
                get_root_logger().warning('val.prior_diagnostics is set but this run has no train.diffusion_opt: '
                                          'there is no prior to draw with, so no diagnostics are drawn.')
            else:
                self.prior_diagnostics = PriorDiagnostics(self.cri_diff, **diagnostics_opt)

    def _result_path(self, image_name, dataset_name, current_iter):
        """Where SRModel saves a validation image."""
        if self.opt['is_train']:
            return osp.join(self.opt['path']['visualization'], image_name, f'{image_name}_{current_iter}.png')
        suffix = self.opt['val'].get('suffix') or self.opt['name']
        return osp.join(self.opt['path']['visualization'], dataset_name, f'{image_name}_{suffix}.png')

    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img):
        # As Real-ESRGAN's models do around their validation: their feed_data synthesises degraded inputs while
        # is_train is set, and validation images are fed as they are.
        is_train, self.is_train = self.is_train, False
        try:
            self._validate(dataloader, current_iter, tb_logger, save_img)
        finally:
            self.is_train = is_train

    def _validate(self, dataloader, current_iter, tb_logger, save_img):
        dataset_name = dataloader.dataset.opt['name']
        metrics = self.opt['val'].get('metrics') or {}
        values = {name: [] for name in metrics}
        self._validations[dataset_name] += 1
        diagnostics = self.prior_diagnostics
        if diagnostics is not None and (self._validations[dataset_name] - 1) % diagnostics.every:
            diagnostics = None
        progress = tqdm(total=len(dataloader), unit='image') if self.opt['val'].get('pbar', False) else None
        for index, data in enumerate(dataloader):
            image_name = osp.splitext(osp.basename(data['lq_path'][0]))[0]
            self.feed_data(data)
            self.test()
            if diagnostics is not None and index < diagnostics.max_images and hasattr(self, 'gt'):
                diagnostics.save(self.output, self.gt, osp.join(self.opt['path']['visualization'], 'prior',
                                                                dataset_name, f'{image_name}_{current_iter}.png'))
            visuals = self.get_current_visuals()
            result = tensor2img([visuals['result']])
            gt = tensor2img([visuals['gt']]) if 'gt' in visuals else None
            for name in ('lq', 'output', 'gt'):
                if hasattr(self, name):
                    delattr(self, name)
            torch.cuda.empty_cache()
            if save_img:
                imwrite(result, self._result_path(image_name, dataset_name, current_iter))
            for name, metric_opt in metrics.items():
                values[name].append(calculate_metric(dict(img=result, img2=gt), metric_opt))
            if progress is not None:
                progress.update(1)
                progress.set_description(f'Test {image_name}')
        if progress is not None:
            progress.close()
        if metrics:
            self._record_metric_means(values, dataset_name, current_iter, tb_logger)

    def _record_metric_means(self, values, dataset_name, current_iter, tb_logger):
        """Means over the non-NaN values (inf, e.g. the PSNR of an exact copy, counts), best values, log."""
        if not hasattr(self, 'metric_results'):
            self.metric_results = {}
        self._initialize_best_metric_results(dataset_name)
        for name, per_image in values.items():
            computed = [value for value in per_image if not math.isnan(value)]
            self.metric_results[name] = sum(computed) / len(computed) if computed else math.nan
            self.metric_counts[name] = (len(computed), len(per_image))
            self._update_best_metric_result(dataset_name, name, self.metric_results[name], current_iter)
        self._log_validation_metric_values(current_iter, dataset_name, tb_logger)

    def _log_validation_metric_values(self, current_iter, dataset_name, tb_logger):
        header = f'Validation {dataset_name}, iter {current_iter}' if self.opt['is_train'] else \
            f'Validation {dataset_name}'
        lines = [header]
        for name, value in self.metric_results.items():
            line = f'\t # {name}: {value:.4f}'
            computed, total = self.metric_counts.get(name, (1, 1))
            if computed < total:
                line += f' (computed on {computed} of {total} images)'
            if hasattr(self, 'best_metric_results'):
                best = self.best_metric_results[dataset_name][name]
                line += f'\tBest: {best["val"]:.4f} @ {best["iter"]} iter'
            lines.append(line)
        get_root_logger().info('\n'.join(lines) + '\n')
        if tb_logger:
            for name, value in self.metric_results.items():
                tb_logger.add_scalar(f'metrics/{dataset_name}/{name}', value, current_iter)
