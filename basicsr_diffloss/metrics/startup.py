"""Checks of ``val.metrics`` made when a model is built, so that a bad metric block fails before training starts."""
import inspect

from basicsr.utils import get_root_logger
from basicsr.utils.registry import METRIC_REGISTRY

from .catalog import better_of_type
from .dists_metric import load_dists
from .lpips_metric import load_lpips

# Metrics whose weights are loaded at start-up: a missing file is reported before the first iteration.
WEIGHT_LOADERS = {
    'calculate_lpips': lambda opt: load_lpips(opt.get('net', 'alex'), opt.get('weights'), opt.get('lin_weights')),
    'calculate_dists': lambda opt: load_dists(opt.get('weights'), opt.get('alpha_beta')),
}


def _options_of(function):
    """(accepted option names, required option names) of a metric function, besides the two images."""
    parameters = inspect.signature(function).parameters
    named = {name: p for name, p in parameters.items() if name not in ('img', 'img2')
             and p.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)}
    return set(named) | {'better'}, {name for name, p in named.items() if p.default is inspect.Parameter.empty}


def check_metric_options(opt):
    """Check every entry of ``opt['val']['metrics']`` (nothing to do without one).

    Errors (ValueError or FileNotFoundError, naming ``val.metrics.<name>`` and the fix): a missing or unregistered
    ``type``, a missing required option (e.g. ``crop_border``), ``better`` other than ``higher``/``lower``, and
    LPIPS/DISTS weights that are missing or do not fit (the networks are loaded here and kept for validation).
    Warnings in BasicSR's log: options the metric ignores, and ``better`` not ``lower`` for a lower-is-better metric
    (the directions are those of ``catalog.METRICS``).
    """
    metrics = (opt.get('val') or {}).get('metrics') or {}
    for name, metric_opt in metrics.items():
        where = f'val.metrics.{name}'
        if not isinstance(metric_opt, dict) or 'type' not in metric_opt:
            raise ValueError(f"{where}: give the metric as a block with a 'type', e.g. {{type: calculate_psnr, "
                             'crop_border: 4, test_y_channel: true}.')
        metric_type = metric_opt['type']
        if metric_type not in METRIC_REGISTRY:
            raise ValueError(f"{where}.type: '{metric_type}' is not a registered metric; use one of "
                             f'{sorted(METRIC_REGISTRY.keys())}.')
        accepted, required = _options_of(METRIC_REGISTRY.get(metric_type))
        missing = sorted(required - set(metric_opt))
        if missing:
            raise ValueError(f'{where}: {metric_type} needs the option(s) {missing} (crop_border: the scale for SR, '
                             '0 for same-size restoration).')
        better = metric_opt.get('better', 'higher')
        if better not in ('higher', 'lower'):
            raise ValueError(f"{where}.better: {better!r} must be 'higher' or 'lower'.")
        ignored = sorted(set(metric_opt) - accepted - {'type'})
        if ignored:
            get_root_logger().warning(f'{where}: {metric_type} ignores the option(s) {ignored}; it takes '
                                      f'{sorted(accepted)}.')
        if better_of_type(metric_type) == 'lower' and better != 'lower':
            get_root_logger().warning(f'{where}: lower {metric_type} values are better; add better: lower so that '
                                      'the best value in the validation log is the lowest.')
        if metric_type in WEIGHT_LOADERS:
            try:
                WEIGHT_LOADERS[metric_type](metric_opt)
            except (FileNotFoundError, ValueError) as error:
                raise type(error)(f'{where}: {error}') from error
