"""The one table of the metrics this package knows: display name, which direction is better, registered types.

Validation's start-up check (``check_metric_options``), the comparison report (``basicsr_diffloss.report``) and the
study (``scripts/study``) all read the direction from here, so "lower is better" is written once.
"""
from typing import NamedTuple


class MetricInfo(NamedTuple):
    title: str  # the name shown in tables
    better: str  # 'higher' or 'lower'
    types: tuple  # the METRIC_REGISTRY types that compute it


# metric name (the key of a val.metrics entry, a report column, a study record) -> MetricInfo
METRICS = {
    'psnr': MetricInfo('PSNR', 'higher', ('calculate_psnr', )),
    'psnr_y': MetricInfo('PSNR-Y', 'higher', ('calculate_psnr', )),
    'ssim': MetricInfo('SSIM', 'higher', ('calculate_ssim', )),
    'ssim_y': MetricInfo('SSIM-Y', 'higher', ('calculate_ssim', )),
    'niqe': MetricInfo('NIQE', 'lower', ('calculate_niqe_or_nan', 'calculate_niqe')),
    'haarpsi': MetricInfo('HaarPSI', 'higher', ('calculate_haarpsi', )),
    'gmsd': MetricInfo('GMSD', 'lower', ('calculate_gmsd', )),
    'ciede2000': MetricInfo('CIEDE2000', 'lower', ('calculate_ciede2000', )),
    'ms_ssim': MetricInfo('MS-SSIM', 'higher', ('calculate_ms_ssim', )),
    'lpips': MetricInfo('LPIPS', 'lower', ('calculate_lpips', )),
    'dists': MetricInfo('DISTS', 'lower', ('calculate_dists', )),
}

# registered metric type -> 'higher' or 'lower', derived from METRICS
BETTER_BY_TYPE = {metric_type: info.better for info in METRICS.values() for metric_type in info.types}


def better_of(name):
    """'higher' or 'lower' for a metric name of ``METRICS`` (``psnr_y``, ``niqe``, ...); KeyError for others."""
    try:
        return METRICS[name].better
    except KeyError:
        raise KeyError(f"'{name}' is not in basicsr_diffloss.metrics.METRICS ({', '.join(METRICS)}): its better "
                       'direction is unknown.') from None


def better_of_type(metric_type):
    """'higher' or 'lower' for a registered metric type (``calculate_gmsd``), None for types not in ``METRICS``."""
    return BETTER_BY_TYPE.get(metric_type)


def lower_is_better(names):
    """The names among ``names`` whose lower values are better, in order."""
    return [name for name in names if better_of(name) == 'lower']
