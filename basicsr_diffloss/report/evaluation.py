"""Evaluation of a trained restorer on validation/test sets, in process, with the comparison's metric set."""
import copy
from os import path as osp

import torch
from basicsr.data import build_dataloader, build_dataset
from basicsr.utils.registry import MODEL_REGISTRY

from ..metrics.catalog import METRICS, better_of
from ..models import with_diffloss
from ..options import OptionError

# The comparison table's columns (metric names of basicsr_diffloss.metrics.METRICS), as (key, column title, better);
# LPIPS and DISTS appear when the option file configures them.
COLUMNS = tuple((key, METRICS[key].title, METRICS[key].better)
                for key in ('psnr', 'psnr_y', 'ssim', 'ssim_y', 'niqe', 'haarpsi', 'gmsd', 'ms_ssim', 'lpips', 'dists'))
LEARNED = {'calculate_lpips': 'lpips', 'calculate_dists': 'dists'}


def crop_border_of(opt):
    """The option file's own ``crop_border`` (first metric that has one), else the scale for SR, else 0."""
    for metric_opt in ((opt.get('val') or {}).get('metrics') or {}).values():
        if 'crop_border' in metric_opt:
            return metric_opt['crop_border']
    scale = opt.get('scale', 1)
    return scale if scale > 1 else 0


def comparison_metrics(opt):
    """The ``val.metrics`` block of the comparison: PSNR and SSIM on RGB and Y as BasicSR computes them, NIQE,
    HaarPSI, GMSD, MS-SSIM, plus the LPIPS and DISTS blocks of the option file's own ``val.metrics``."""
    border = crop_border_of(opt)
    metrics = {
        'psnr': dict(type='calculate_psnr', crop_border=border, test_y_channel=False),
        'psnr_y': dict(type='calculate_psnr', crop_border=border, test_y_channel=True),
        'ssim': dict(type='calculate_ssim', crop_border=border, test_y_channel=False),
        'ssim_y': dict(type='calculate_ssim', crop_border=border, test_y_channel=True),
        'niqe': dict(type='calculate_niqe_or_nan', crop_border=border),
        'haarpsi': dict(type='calculate_haarpsi', crop_border=border),
        'gmsd': dict(type='calculate_gmsd', crop_border=border),
        'ms_ssim': dict(type='calculate_ms_ssim', crop_border=border),
    }
    for metric_opt in ((opt.get('val') or {}).get('metrics') or {}).values():
        if metric_opt.get('type') in LEARNED:
            metrics[LEARNED[metric_opt['type']]] = dict(metric_opt)
    for key, metric_opt in metrics.items():
        if better_of(key) == 'lower':
            metric_opt['better'] = 'lower'
    return metrics


def evaluation_datasets(opt, source=None):
    """The dataset blocks to evaluate on: ``source``'s (a test option dict) ``test*``/``val*`` entries if given,
    else the option file's ``val*`` entries, each prepared as BasicSR's option parser does (phase, scale)."""
    datasets = (source or opt)['datasets']
    chosen = {key: copy.deepcopy(value) for key, value in datasets.items()
              if key.split('_')[0] in (('test', 'val') if source else ('val', ))}
    if not chosen:
        raise OptionError('No validation/test dataset to evaluate on: the option file has no datasets.val entry (give '
                         'one, or --datasets_from a test option file).')
    for dataset_opt in chosen.values():
        dataset_opt['phase'] = 'val'
        if 'scale' in opt:
            dataset_opt['scale'] = opt['scale']
    return chosen


def evaluate(opt, checkpoint, datasets, metrics, label, output_dir):
    """Run the restorer of ``opt`` (weights from ``checkpoint``) on ``datasets`` through its model's validation, as
    the model type with the package's mixins (NaN-aware metric means, the same for both runs of a comparison).

    Returns ``{dataset name: {'values': {metric: mean}, 'counts': {metric: (computed, total)}, 'images': folder}}``;
    the restored images are saved as ``output_dir/<dataset>/<image>_<label>.png``.
    """
    test_opt = {key: copy.deepcopy(value) for key, value in opt.items() if key not in ('train', 'datasets', 'logger')}
    num_gpu = opt.get('num_gpu', 'auto')
    test_opt.update(name=label, is_train=False, dist=False, rank=0, world_size=1,
                    num_gpu=torch.cuda.device_count() if num_gpu == 'auto' else num_gpu)
    test_opt['path'] = dict(pretrain_network_g=checkpoint, strict_load_g=True, param_key_g='params_ema',
                            visualization=output_dir)
    test_opt['val'] = dict(save_img=True, suffix=None, metrics=metrics)
    model = with_diffloss(MODEL_REGISTRY.get(opt['model_type']), opt['model_type'])(test_opt)
    results = {}
    for dataset_opt in datasets.values():
        loader = build_dataloader(build_dataset(dataset_opt), dataset_opt, num_gpu=test_opt['num_gpu'], dist=False,
                                  sampler=None, seed=opt.get('manual_seed'))
        model.validation(loader, current_iter=label, tb_logger=None, save_img=True)
        results[dataset_opt['name']] = dict(values=dict(model.metric_results),
                                            counts=dict(getattr(model, 'metric_counts', {})),
                                            images=osp.join(output_dir, dataset_opt['name']))
    return results
