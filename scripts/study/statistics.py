"""Paired per-image differences between a setting and its baseline, over images and seeds."""
import math

import numpy as np

from basicsr_diffloss.metrics.catalog import better_of


def paired_difference(runs, setting, baseline, metric):
    """Compare ``setting`` with ``baseline`` on ``metric``, image by image, with the seeds each shares.

    Args:
        runs (dict): ``{(setting, seed): {image: {metric: value}}}``.

    Returns:
        dict with ``mean`` (of the per-image differences, each averaged over the shared seeds), ``se`` (its standard
        error over images), ``wins`` / ``images`` (images that improved), ``seeds`` and ``per_seed`` (the mean
        difference of each seed); None when no seed has both runs.
    """
    seeds = sorted(seed for (name, seed) in runs if name == setting and (baseline, seed) in runs)
    if not seeds:
        return None
    images = sorted(runs[(setting, seeds[0])])
    table = np.array([[runs[(setting, seed)][image][metric] - runs[(baseline, seed)][image][metric]
                       for image in images] for seed in seeds], dtype=np.float64)  # seeds x images
    valid = ~np.isnan(table).any(axis=0)
    per_image = table[:, valid].mean(axis=0)
    count = len(per_image)
    sign = -1 if better_of(metric) == 'lower' else 1  # a win is a decrease where lower is better
    return dict(mean=float(per_image.mean()) if count else math.nan,
                se=float(per_image.std(ddof=1) / math.sqrt(count)) if count > 1 else math.nan,
                wins=int((sign * per_image > 0).sum()), images=count, seeds=seeds,
                per_seed=[float(row[valid].mean()) for row in table])


def metric_means(runs, setting, metric):
    """The mean of ``metric`` over images and seeds of ``setting`` (NaN values left out)."""
    values = [value[metric] for (name, _), images in runs.items() if name == setting for value in images.values()]
    values = [value for value in values if not math.isnan(value)]
    return float(np.mean(values)) if values else math.nan
