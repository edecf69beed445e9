"""Image-quality metrics registered in BasicSR's METRIC_REGISTRY on import, for ``val.metrics`` blocks.

| type | kind | range, better | weights |
|---|---|---|---|
| ``calculate_niqe_or_nan`` | no-reference | ~2-10, lower; NaN below two 96 px blocks | none (BasicSR's) |
| ``calculate_haarpsi`` | full-reference | [0, 1], higher | none (piq) |
| ``calculate_gmsd`` | full-reference | [0, ~0.35], lower | none (piq) |
| ``calculate_ciede2000`` | full-reference | CIELAB units, lower (2.3: just noticeable) | none (scikit-image) |
| ``calculate_ms_ssim`` | full-reference | [0, 1], higher; NaN below 161 px | none (piq) |
| ``calculate_lpips`` | full-reference | [0, ~1], lower | torchvision backbone file, local |
| ``calculate_dists`` | full-reference | [0, ~1], lower | torchvision VGG16 file, local |

``check_metric_options(opt)`` checks a ``val.metrics`` block when a model is built (DiffLossSRModel does).
``METRICS`` (``catalog.py``) is the one table of metric name -> display name, better direction and registered
types that validation, the comparison report and the study read; ``better_of(name)``, ``better_of_type(type)``.
"""
from .catalog import BETTER_BY_TYPE, METRICS, MetricInfo, better_of, better_of_type, lower_is_better
from .colour_error import calculate_ciede2000
from .dists_metric import DISTSNetwork, calculate_dists, load_dists
from .full_reference import calculate_gmsd, calculate_haarpsi, calculate_ms_ssim
from .image_tensor import to_tensor
from .lpips_metric import calculate_lpips, load_lpips
from .niqe import calculate_niqe_or_nan
from .startup import check_metric_options

__all__ = [
    'BETTER_BY_TYPE', 'DISTSNetwork', 'METRICS', 'MetricInfo', 'better_of', 'better_of_type', 'calculate_ciede2000',
    'calculate_dists',
    'calculate_gmsd', 'calculate_haarpsi', 'calculate_lpips', 'calculate_ms_ssim', 'calculate_niqe_or_nan',
    'check_metric_options', 'load_dists', 'load_lpips', 'lower_is_better', 'to_tensor'
]
