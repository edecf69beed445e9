"""An image grid LQ | baseline | +DiffLoss | GT of the crops where the two restorations differ most."""
import cv2
import numpy as np

from .pictures import pyplot

COLUMNS = ('LQ (bicubic to GT size)', 'baseline', '+DiffLoss', 'GT')


def _window_means(difference, size):
    """Mean of ``difference`` (H, W) over every ``size`` x ``size`` window, indexed by the window's top-left corner."""
    total = cv2.integral(difference.astype(np.float64))
    return (total[size:, size:] - total[:-size, size:] - total[size:, :-size] + total[:-size, :-size]) / size**2


def choose_crops(pairs, size, count):
    """The ``count`` crops where the two images of a pair differ most, non-overlapping within an image.

    Args:
        pairs (dict): image name -> (first, second), uint8 images of equal shape.
        size (int): crop side; clipped to the smallest image side.
        count (int): how many crops, over all images.

    Returns:
        list of (name, top, left, side, mean absolute difference), largest difference first.
    """
    side = min([size] + [min(first.shape[:2]) for first, _ in pairs.values()])
    candidates = []
    for name, (first, second) in pairs.items():
        difference = np.abs(first.astype(np.float32) - second.astype(np.float32))
        means = _window_means(difference.mean(axis=2) if difference.ndim == 3 else difference, side)
        for _ in range(count):
            top, left = np.unravel_index(np.argmax(means), means.shape)
            if not np.isfinite(means[top, left]):
                break
            candidates.append((name, int(top), int(left), side, float(means[top, left])))
            means[max(0, top - side + 1):top + side, max(0, left - side + 1):left + side] = -np.inf
    return sorted(candidates, key=lambda crop: -crop[4])[:count]


def save_grid(images, crops, path, title, labels=COLUMNS):
    """Draw the crops of every column and save a PNG.

    Args:
        images (dict): image name -> dict with uint8 BGR images ``lq`` (any size), ``baseline``, ``diffloss``, ``gt``.
        crops (list): from :func:`choose_crops`.
        path (str): the PNG to write.
        title (str): the figure's title.
        labels (tuple): the four column titles. Default: ``COLUMNS``.
    """
    plt = pyplot()
    cell = 2.4
    figure, axes = plt.subplots(len(crops), 4, figsize=(4 * cell, len(crops) * cell + 0.6), squeeze=False)
    for row, (name, top, left, side, difference) in enumerate(crops):
        columns = images[name]
        height, width = columns['gt'].shape[:2]
        lq = cv2.resize(columns['lq'], (width, height), interpolation=cv2.INTER_CUBIC)
        for column, image in enumerate((lq, columns['baseline'], columns['diffloss'], columns['gt'])):
            crop = image[top:top + side, left:left + side]
            axis = axes[row][column]
            axis.imshow(cv2.cvtColor(crop, cv2.COLOR_BGR2RGB) if crop.ndim == 3 else crop, cmap='gray',
                        interpolation='nearest')
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(labels[column], fontsize=10)
        axes[row][0].set_ylabel(f'{name}\ny {top}, x {left}\n|diff| {difference:.1f}', fontsize=8)
    figure.suptitle(title, fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
