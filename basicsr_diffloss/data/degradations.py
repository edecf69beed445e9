"""Synthetic degradations, each built from a YAML option dict and applied to an HWC BGR float32 image in [0, 1].

``build_degradations(list_of_dicts)`` returns the callables in order; each is called as ``degrade(image, rng)`` with
a ``numpy.random.Generator`` that supplies every random draw, so a seeded generator gives a reproducible result.
Options that accept a range take a number (fixed) or ``[low, high]`` (drawn uniformly per image).
"""
import inspect

import cv2
import numpy as np
from basicsr.data.degradations import bivariate_Gaussian
from basicsr.utils.matlab_functions import imresize

from ..options import OptionError, choice, number, number_or_range, option_error


class Range:
    """A number or a ``[low, high]`` range, checked against bounds; ``draw(rng)`` picks a value."""

    def __init__(self, where, name, value, minimum, maximum=None, integer=False):
        self.low, self.high = number_or_range(where, name, value, minimum, maximum, integer)
        self.integer = integer

    def draw(self, rng):
        if self.low == self.high:
            return self.low
        return int(rng.integers(self.low, self.high + 1)) if self.integer else float(rng.uniform(self.low, self.high))


class Bicubic:
    """Down-scale by an integer ``scale`` with MATLAB-style bicubic (antialiased), the SR benchmarks' convention.

    Options: ``scale`` (int, required).
    """

    def __init__(self, where, scale):
        self.scale = number(where, 'scale', scale, minimum=1, integer=True)

    def __call__(self, image, rng):
        return imresize(image, 1 / self.scale) if self.scale > 1 else image


class GaussianNoise:
    """Additive white Gaussian noise.

    Options: ``sigma`` (number or [low, high], 0-255 units, required); ``gray`` (bool: the same noise in every
    channel; default False, colour noise); ``clip`` (bool: clip to [0, 1]; default True. Gaussian-denoising benchmarks
    usually leave the noisy image unclipped, ``clip: false``).
    """

    def __init__(self, where, sigma, gray=False, clip=True):
        self.sigma = Range(where, 'sigma', sigma, minimum=0)
        self.gray, self.clip = bool(gray), bool(clip)

    def __call__(self, image, rng):
        shape = image.shape[:2] + (1, ) if self.gray else image.shape
        noisy = image + rng.standard_normal(shape, dtype=np.float32) * np.float32(self.sigma.draw(rng) / 255)
        return np.clip(noisy, 0, 1) if self.clip else noisy


class GaussianBlur:
    """Isotropic Gaussian blur.

    Options: ``kernel_size`` (odd int; default 21); ``sigma`` (number or [low, high] in pixels, > 0; default
    [0.2, 3.0]).
    """

    def __init__(self, where, kernel_size=21, sigma=(0.2, 3.0)):
        self.kernel_size = number(where, 'kernel_size', kernel_size, minimum=1, integer=True)
        if self.kernel_size % 2 != 1:
            raise option_error(where, 'kernel_size', kernel_size, 'must be an odd integer.')
        self.sigma = Range(where, 'sigma', sigma, minimum=1e-3)

    def __call__(self, image, rng):
        sigma = self.sigma.draw(rng)
        kernel = bivariate_Gaussian(self.kernel_size, sigma, sigma, 0, isotropic=True).astype(np.float32)
        return cv2.filter2D(image, -1, kernel, borderType=cv2.BORDER_REFLECT_101)


def motion_kernel(length, angle):
    """A normalised straight-line kernel covering ``length`` pixels at ``angle`` degrees (anti-aliased)."""
    size = int(np.ceil(length)) // 2 * 2 + 1
    centre = size // 2
    offsets = np.linspace(-(length - 1) / 2, (length - 1) / 2, max(int(np.ceil(length * 4)), 1))
    theta = np.deg2rad(angle)
    xs, ys = centre + offsets * np.cos(theta), centre - offsets * np.sin(theta)
    x0, y0 = np.floor(xs).astype(int), np.floor(ys).astype(int)
    fx, fy = xs - x0, ys - y0
    kernel = np.zeros((size, size), np.float32)
    for dx, dy, weight in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        np.add.at(kernel, (np.clip(y0 + dy, 0, size - 1), np.clip(x0 + dx, 0, size - 1)), weight)
    return kernel / kernel.sum()


class MotionBlur:
    """Linear motion blur: a straight line kernel.

    Options: ``length`` (number or [low, high] in pixels, >= 1; default [5, 21]); ``angle`` (number or [low, high]
    in degrees; default [0, 180]).
    """

    def __init__(self, where, length=(5, 21), angle=(0, 180)):
        self.length = Range(where, 'length', length, minimum=1)
        self.angle = Range(where, 'angle', angle, minimum=-360, maximum=360)

    def __call__(self, image, rng):
        kernel = motion_kernel(self.length.draw(rng), self.angle.draw(rng))
        return cv2.filter2D(image, -1, kernel, borderType=cv2.BORDER_REFLECT_101)


class JPEG:
    """JPEG compression at an integer quality (OpenCV >= 4.5.4 rejects a float quality, and basicsr 1.4.2's
    ``add_jpg_compression`` passes its image as float, which OpenCV 5 truncates with a warning; here the image is
    rounded to uint8 first).

    Options: ``quality`` (int or [low, high] in [1, 100]; default [30, 95]).
    """

    def __init__(self, where, quality=(30, 95)):
        self.quality = Range(where, 'quality', quality, minimum=1, maximum=100, integer=True)

    def __call__(self, image, rng):
        pixels = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
        _, encoded = cv2.imencode('.jpg', pixels, [cv2.IMWRITE_JPEG_QUALITY, int(self.quality.draw(rng))])
        return cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED).reshape(image.shape).astype(np.float32) / 255


class LowLight:
    """Under-exposure: ``gain * image ** gamma``, then photon (shot) and read noise, clipped to [0, 1].

    Options: ``gamma`` (number or [low, high], >= 1; default [2.0, 3.5]); ``gain`` (number or [low, high] in (0, 1];
    default [0.1, 0.5]); ``shot_noise`` (number or [low, high] >= 0: a signal x gets noise of variance
    ``shot_noise * x / 255``, i.e. Poisson noise with ``shot_noise`` 0-255 levels per photon; default 0);
    ``read_noise`` (number or [low, high], standard deviation in 0-255 units; default 0).
    """

    def __init__(self, where, gamma=(2.0, 3.5), gain=(0.1, 0.5), shot_noise=0, read_noise=0):
        self.gamma = Range(where, 'gamma', gamma, minimum=1)
        self.gain = Range(where, 'gain', gain, minimum=1e-3, maximum=1)
        self.shot_noise = Range(where, 'shot_noise', shot_noise, minimum=0)
        self.read_noise = Range(where, 'read_noise', read_noise, minimum=0)

    def __call__(self, image, rng):
        dark = np.float32(self.gain.draw(rng)) * np.clip(image, 0, 1)**np.float32(self.gamma.draw(rng))
        shot, read = self.shot_noise.draw(rng) / 255, self.read_noise.draw(rng) / 255
        std = np.sqrt(dark * np.float32(shot) + np.float32(read)**2)
        return np.clip(dark + std * rng.standard_normal(dark.shape, dtype=np.float32), 0, 1)


DEGRADATIONS = {
    'bicubic': Bicubic,
    'gaussian_noise': GaussianNoise,
    'gaussian_blur': GaussianBlur,
    'motion_blur': MotionBlur,
    'jpeg': JPEG,
    'low_light': LowLight,
}


def build_degradations(options, owner='DegradedImageDataset'):
    """The degradation callables for a list of option dicts ``{type: ..., ...}``, in order."""
    if not isinstance(options, (list, tuple)) or not options:
        raise OptionError(f"{owner} option 'degradations' must be a non-empty list of dicts with a 'type' "
                          f'({", ".join(DEGRADATIONS)}); got {options!r}.')
    degradations = []
    for index, option in enumerate(options):
        where = f'{owner} degradations[{index}]'
        kind = choice(where, 'type', option.get('type') if isinstance(option, dict) else None, DEGRADATIONS)
        where = f'{where} ({kind})'
        cls = DEGRADATIONS[kind]
        accepted = [name for name in inspect.signature(cls).parameters if name != 'where']
        unknown = sorted(set(option) - set(accepted) - {'type'})
        if unknown:
            raise OptionError(f'{where}: unknown option(s) {unknown}; {kind} accepts {accepted}.')
        missing = [name for name, parameter in inspect.signature(cls).parameters.items()
                   if parameter.default is inspect.Parameter.empty and name != 'where' and name not in option]
        if missing:
            raise OptionError(f'{where}: missing option(s) {missing}.')
        degradations.append(cls(where, **{k: v for k, v in option.items() if k != 'type'}))
    return degradations
