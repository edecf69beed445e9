"""A metric that cannot be computed on an image returns NaN, with one warning per metric and image size."""
import math

from basicsr.utils import get_root_logger

_warned = set()


def not_computable(metric, height, width, requirement):
    """Warn (once per ``metric`` and image size, in BasicSR's log) that ``metric`` needs ``requirement``; NaN.

    DiffLossSRModel's validation leaves NaN values out of its means and says in the log on how many images each
    metric was computed, so one small image does not turn a whole validation into NaN.
    """
    if (metric, height, width) not in _warned:
        _warned.add((metric, height, width))
        get_root_logger().warning(
            f'{metric}: the image is {height}x{width} px after crop_border, but {metric} needs {requirement}. '
            f'{metric} is NaN for images of this size (warned once per size): DiffLossSRModel leaves it out of the '
            'mean and logs on how many images the metric was computed. Evaluate on larger images to get a value.')
    return math.nan
