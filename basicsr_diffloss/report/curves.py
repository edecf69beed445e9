"""Training curves of the two runs: each loss term and each validation metric against iterations."""
import math

from .pictures import pyplot

RUN_STYLES = {'baseline': dict(color='tab:blue'), '+DiffLoss': dict(color='tab:orange')}


def save_training_curves(runs, path, columns=3):
    """Plot the runs' losses and validation metrics, one panel each, and save a PNG.

    Args:
        runs (dict): run label (``baseline``, ``+DiffLoss``) -> (losses, metrics) from ``parse_train_log``.
        path (str): the PNG to write.
        columns (int): panels per row. Default: 3.
    """
    plt = pyplot()
    panels = []
    for kind, index in (('loss', 0), ('validation', 1)):
        for run in runs.values():
            panels += [(kind, key) for key in run[index] if (kind, key) not in panels]
    rows = max(1, math.ceil(len(panels) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.0 * rows), squeeze=False)
    for axis, (kind, key) in zip(axes.flat, panels):
        positive = True
        for label, run in runs.items():
            series = run[0 if kind == 'loss' else 1].get(key)
            if not series:
                continue
            iters = sorted(series)
            values = [series[i] for i in iters]
            positive = positive and all(value > 0 for value in values)
            axis.plot(iters, values, marker='o' if kind == 'validation' else None, markersize=3, label=label,
                      **RUN_STYLES.get(label, {}))
        axis.set_title(key if kind == 'loss' else f'{key[1]} ({key[0]})', fontsize=10)
        axis.set_xlabel('iteration', fontsize=8)
        if kind == 'loss' and positive:
            axis.set_yscale('log')
        axis.legend(fontsize=8)
        axis.grid(alpha=0.3)
    for axis in list(axes.flat)[len(panels):]:
        axis.axis('off')
    if not panels:
        axes[0][0].text(0.5, 0.5, 'no training log lines found', ha='center')
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
