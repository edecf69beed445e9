"""Synthetic degradations, each built from a YAML option dict and applied to an HWC BGR float32 image in [0, 1].

``build_degradations(list_of_dicts)`` returns the callables in order; each is called as ``degrade(image, rng)`` with
a ``numpy.random.Generator`` that supplies every random draw, so a seeded generator gives a reproducible result.
Those with a ``depth_files`` attribute (``haze``, and ``rain`` with haze) take the scene depth too when it is set:
``degrade(image, rng, depth)``, the relative depth map that DegradedImageDataset reads, crops and flips with the image.
Options that accept a range take a number (fixed) or ``[low, high]`` (drawn uniformly per image).
"""
import inspect

import cv2
import numpy as np
from basicsr.data.degradations import bivariate_Gaussian
from basicsr.utils.matlab_functions import imresize

from ..options import OptionError, choice, number, number_or_range, option_error
from .depth_files import DepthFiles


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
    """Under-exposure: ``channel_gain * gain * image ** gamma``, then photon (shot) and read noise, clipped to [0, 1].

    Options: ``gamma`` (number or [low, high], >= 1; default [2.0, 3.5]); ``gain`` (number or [low, high] in (0, 1];
    default [0.1, 0.5]); ``channel_gain`` (number or [low, high] >= 0: each colour channel's own sensor gain, drawn
    per channel, a colour cast the restorer must undo; default 1, none); ``shot_noise`` (number or [low, high] >= 0:
    a signal x gets noise of variance ``shot_noise * x / 255``, i.e. Poisson noise with ``shot_noise`` 0-255 levels
    per photon; default 0); ``read_noise`` (number or [low, high], standard deviation in 0-255 units; default 0).
    """

    def __init__(self, where, gamma=(2.0, 3.5), gain=(0.1, 0.5), channel_gain=1, shot_noise=0, read_noise=0):
        self.gamma = Range(where, 'gamma', gamma, minimum=1)
        self.gain = Range(where, 'gain', gain, minimum=1e-3, maximum=1)
        self.channel_gain = Range(where, 'channel_gain', channel_gain, minimum=0)
        self.shot_noise = Range(where, 'shot_noise', shot_noise, minimum=0)
        self.read_noise = Range(where, 'read_noise', read_noise, minimum=0)

    def __call__(self, image, rng):
        dark = np.float32(self.gain.draw(rng)) * np.clip(image, 0, 1)**np.float32(self.gamma.draw(rng))
        if self.channel_gain.low != 1 or self.channel_gain.high != 1:
            gains = [self.channel_gain.draw(rng) for _ in range(image.shape[2])]
            dark = dark * np.asarray(gains, np.float32)
        shot, read = self.shot_noise.draw(rng) / 255, self.read_noise.draw(rng) / 255
        std = np.sqrt(np.clip(dark, 0, None) * np.float32(shot) + np.float32(read)**2)
        return np.clip(dark + std * rng.standard_normal(dark.shape, dtype=np.float32), 0, 1)


def random_depth(height, width, rng, gradient, scale, near):
    """A smooth random relative depth map for a single photo, ``near`` at its nearest point and 1 at its farthest.

    A share ``gradient`` of it is a vertical ramp, far at the top and near at the bottom (the ground recedes towards
    the horizon in most photos); the rest is low-frequency noise with blobs about ``scale`` times the longer side
    (objects at different distances). Both are smooth, as depth is within objects, so the haze varies slowly.
    """
    cell = max(scale * max(height, width), 1.0)
    grid = rng.standard_normal((int(np.ceil(height / cell)) + 1, int(np.ceil(width / cell)) + 1)).astype(np.float32)
    noise = cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
    ramp = np.linspace(1, 0, height, dtype=np.float32)[:, None]
    field = np.float32(gradient) * ramp + np.float32(1 - gradient) * normalised(noise)
    return np.float32(near) + np.float32(1 - near) * normalised(field)


def normalised(field):
    """``field`` scaled to [0, 1] (zeros where it is constant)."""
    span = float(field.max() - field.min())
    return (field - field.min()) / np.float32(span) if span > 0 else np.zeros_like(field)


def transmission(depth, beta):
    """The share of scene light that reaches the camera through haze of scattering coefficient ``beta``:
    ``exp(-beta * depth)``, in (0, 1]."""
    return np.exp(-np.float32(beta) * depth)


class Haze:
    """Haze by the atmospheric scattering model (Koschmieder; McCartney 1976): ``I = J t + A (1 - t)`` with
    ``t = exp(-beta d)``, on the image's values as stored (sRGB), as RESIDE (Li et al., TIP 2019) synthesises it.

    ``d`` is relative depth (1 = the farthest point of the image), so ``beta`` is the optical thickness at the
    farthest point: there ``t = exp(-beta)``. It comes from a depth file beside the image when ``depth_folder`` is
    set (``DepthFiles``), else from ``random_depth``, drawn per image (per crop in the train phase).

    Options: ``beta`` (number or [low, high] >= 0; default [0.5, 2.5]: t at the farthest point from 0.61 to 0.08);
    ``airlight`` (number or [low, high] in [0, 1], the atmospheric light A; default [0.7, 1.0]); ``tint`` (number or
    [low, high] in [0, 1]: each channel of A is scaled by its own factor drawn from [1 - tint, 1 + tint] and clipped
    to 1; default 0, grey haze); ``depth_folder`` (folder of depth maps named ``<image stem><depth_suffix>``, or ~ for
    a random depth field; default ~); ``depth_suffix`` (default '.png'; '.png' or '.npy' files). Random depth field
    only: ``depth_gradient`` (number or [low, high] in [0, 1], the share of the top-far vertical ramp; default
    [0.3, 0.9]); ``depth_scale`` (number or [low, high] in [0.01, 1], the size of the depth blobs as a share of the
    longer side; default [0.2, 0.5]); ``near_depth`` (number or [low, high] in [0, 1], the relative depth of the
    nearest point; default [0.0, 0.3]).
    """

    def __init__(self, where, beta=(0.5, 2.5), airlight=(0.7, 1.0), tint=0, depth_folder=None, depth_suffix='.png',
                 depth_gradient=(0.3, 0.9), depth_scale=(0.2, 0.5), near_depth=(0.0, 0.3)):
        self.beta = Range(where, 'beta', beta, minimum=0)
        self.airlight = Range(where, 'airlight', airlight, minimum=0, maximum=1)
        self.tint = Range(where, 'tint', tint, minimum=0, maximum=1)
        self.depth_files = None if depth_folder is None else DepthFiles(where, depth_folder, depth_suffix)
        self.depth_gradient = Range(where, 'depth_gradient', depth_gradient, minimum=0, maximum=1)
        self.depth_scale = Range(where, 'depth_scale', depth_scale, minimum=0.01, maximum=1)
        self.near_depth = Range(where, 'near_depth', near_depth, minimum=0, maximum=1)
        self.where = where

    def __call__(self, image, rng, depth=None):
        height, width = image.shape[:2]
        beta, airlight = self.beta.draw(rng), self.airlight.draw(rng)
        tint = self.tint.draw(rng)
        airlight = np.minimum(airlight * (1 + rng.uniform(-tint, tint, 3)), 1) if tint else np.full(3, airlight)
        if self.depth_files is not None:
            if depth is None:
                raise ValueError(f'{self.where}: depth_folder is set but no depth map was given; DegradedImageDataset '
                                 'reads it (call the degradation with depth=).')
            if depth.shape != (height, width):  # a bicubic degradation came first
                depth = cv2.resize(depth, (width, height), interpolation=cv2.INTER_AREA)
        else:
            depth = random_depth(height, width, rng, self.depth_gradient.draw(rng), self.depth_scale.draw(rng),
                                 self.near_depth.draw(rng))
        t = transmission(depth, beta)[..., None]
        return image * t + airlight.astype(np.float32) * (1 - t)


def streak_kernel(length, width, angle):
    """One rain streak, peak 1: a drop moving ``length`` pixels during the exposure (``motion_kernel``) at ``angle``
    degrees from vertical (positive: the top leans right), with a Gaussian cross-section ``width`` pixels wide at half
    maximum."""
    sigma = width / (2 * np.sqrt(2 * np.log(2)))
    kernel = np.pad(motion_kernel(length, 90 - angle), int(np.ceil(3 * sigma)))
    kernel = cv2.GaussianBlur(kernel, (0, 0), sigma)
    return kernel / kernel.max()


class Rain:
    """Rain streaks composited onto the image as in the Rain100L/H synthesis (Yang et al., CVPR 2017):
    ``O = B + S`` for a streak layer S, clipped to [0, 1] (``blend: add``), or ``1 - (1 - B)(1 - S)`` (``blend:
    screen``, the blending of the Photoshop rain recipe; Rain14000 (Fu et al., CVPR 2017), part of Rain13K, was
    rendered in Photoshop). Layers are composited in turn, then optionally veiled by haze as in Rain100H's model
    ``O = alpha (B + S) + (1 - alpha) A`` (``haze``: the ``haze`` degradation's options, alpha its transmission).

    Each layer scatters drops at random (``density``: the share of pixels where a drop starts, each of intensity
    uniform in [0.5, 1]; a layer covers about density x length x width of the image) and draws each drop as a streak
    (``streak_kernel``: the drop motion-blurred over ``length`` pixels along ``angle``, ``width`` wide), scaled by the
    layer's brightness; streaks are grey. All layers share one angle per image; the other settings are drawn per
    layer (near and far rain). Stack two ``rain`` degradations for rain from two directions. Lengths and widths are
    in pixels of the image the degradation receives (the crop, in the train phase).

    Options: ``density`` (number or [low, high] in [0, 1]; default [0.001, 0.004]); ``length`` (number or [low, high]
    in pixels, >= 1; default [10, 40]); ``width`` (number or [low, high] in pixels, > 0; default [1, 2.5]);
    ``angle`` (number or [low, high] in degrees from vertical, in [-90, 90]; default [-20, 20]); ``brightness``
    (number or [low, high] in [0, 1], the streaks' peak; default [0.3, 0.7]); ``layers`` (int or [low, high] >= 1;
    default 1); ``blend`` ('add' or 'screen'; default 'add'); ``haze`` (a dict of ``haze`` options, or ~ for no
    veiling; default ~).
    """

    def __init__(self, where, density=(0.001, 0.004), length=(10, 40), width=(1, 2.5), angle=(-20, 20),
                 brightness=(0.3, 0.7), layers=1, blend='add', haze=None):
        self.density = Range(where, 'density', density, minimum=0, maximum=1)
        self.length = Range(where, 'length', length, minimum=1)
        self.width = Range(where, 'width', width, minimum=0.1)
        self.angle = Range(where, 'angle', angle, minimum=-90, maximum=90)
        self.brightness = Range(where, 'brightness', brightness, minimum=0, maximum=1)
        self.layers = Range(where, 'layers', layers, minimum=1, integer=True)
        self.blend = choice(where, 'blend', blend, ('add', 'screen'))
        if haze is not None and not isinstance(haze, dict):
            raise option_error(where, 'haze', haze, 'must be a dict of haze options (e.g. {beta: 0.5}) or ~.')
        self.haze = None if haze is None else build_degradation(Haze, haze, f'{where} haze')
        self.depth_files = None if self.haze is None else self.haze.depth_files

    def streaks(self, height, width, angle, rng):
        """One layer of streaks (HxWx1, in [0, brightness])."""
        density, brightness = self.density.draw(rng), self.brightness.draw(rng)
        kernel = streak_kernel(self.length.draw(rng), self.width.draw(rng), angle)
        margin = kernel.shape[0] // 2  # drops outside the image whose streaks reach into it
        canvas = np.zeros((height + 2 * margin, width + 2 * margin), np.float32)
        drops = rng.binomial(canvas.size, density)
        canvas.flat[rng.integers(0, canvas.size, drops)] = rng.uniform(0.5, 1, drops)
        layer = cv2.filter2D(canvas, -1, kernel, borderType=cv2.BORDER_CONSTANT)[margin:-margin or None,
                                                                                 margin:-margin or None]
        return (np.float32(brightness) * np.minimum(layer, 1))[..., None]

    def __call__(self, image, rng, depth=None):
        angle = self.angle.draw(rng)
        rainy = image
        for _ in range(self.layers.draw(rng)):
            layer = self.streaks(*image.shape[:2], angle, rng)
            rainy = np.clip(rainy + layer if self.blend == 'add' else 1 - (1 - rainy) * (1 - layer), 0, 1)
        return rainy if self.haze is None else self.haze(rainy, rng, depth)


DEGRADATIONS = {
    'bicubic': Bicubic,
    'gaussian_noise': GaussianNoise,
    'gaussian_blur': GaussianBlur,
    'motion_blur': MotionBlur,
    'jpeg': JPEG,
    'low_light': LowLight,
    'haze': Haze,
    'rain': Rain,
}


def build_degradation(cls, option, where):
    """The degradation ``cls`` built from its option dict (``type`` aside), unknown and missing options refused."""
    accepted = [name for name in inspect.signature(cls).parameters if name != 'where']
    unknown = sorted(set(option) - set(accepted) - {'type'})
    if unknown:
        raise OptionError(f'{where}: unknown option(s) {unknown}; it accepts {accepted}.')
    missing = [name for name, parameter in inspect.signature(cls).parameters.items()
               if parameter.default is inspect.Parameter.empty and name != 'where' and name not in option]
    if missing:
        raise OptionError(f'{where}: missing option(s) {missing}.')
    return cls(where, **{k: v for k, v in option.items() if k != 'type'})


def build_degradations(options, owner='DegradedImageDataset'):
    """The degradation callables for a list of option dicts ``{type: ..., ...}``, in order."""
    if not isinstance(options, (list, tuple)) or not options:
        raise OptionError(f"{owner} option 'degradations' must be a non-empty list of dicts with a 'type' "
                          f'({", ".join(DEGRADATIONS)}); got {options!r}.')
    degradations = []
    for index, option in enumerate(options):
        where = f'{owner} degradations[{index}]'
        kind = choice(where, 'type', option.get('type') if isinstance(option, dict) else None, DEGRADATIONS)
        degradations.append(build_degradation(DEGRADATIONS[kind], option, f'{where} ({kind})'))
    return degradations


def scene_depth_files(degradations):
    """The ``DepthFiles`` the degradations read the scene depth from, or None; one source per dataset (the depth of
    a scene is one map)."""
    sources = {d.depth_files for d in degradations if getattr(d, 'depth_files', None) is not None}
    if len(sources) > 1:
        folders = sorted(f'{s.folder}/*{s.suffix}' for s in sources)
        raise OptionError(f"DegradedImageDataset option 'degradations': the depth maps come from {folders}; a "
                          'scene has one depth map, so give every depth_folder / depth_suffix the same value.')
    return next(iter(sources), None)
