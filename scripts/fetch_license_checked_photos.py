"""Rebuild the photo set of the next default prior from Debian packages, with licenses that allow shipping weights.

Every photo below is a real photograph, looked at by eye, whose license allows shipping weights trained on it with
credit: CC0, CC-BY, public domain, or the permissive BSD-2-clause license of its package. For each, the script
downloads its Debian package with ``apt-get download`` into ``--cache`` (kept between runs), unpacks it with
``dpkg-deb -x``, checks that the package's ``copyright`` file (or the file named in the table) still states the
license the table gives, and writes the photo as PNG into ``--output``/train, /val or /confirm. The scikit-image
photos come from the installed scikit-image (the license is checked in their loaders' docstrings). Photos whose short
side exceeds ``--max_short_side`` are downscaled (Lanczos) to it; smaller ones keep their native size, so that a prior
trained on them sees native-scale detail. Grey photos are stored as RGB.

Two held-out splits are fixed in the table, none of them a training photo of the shipped default prior, so that
both priors can be compared on them: ``val`` (5 photos, for choosing a prior recipe) and ``confirm`` (12 photos: the
study's confirmation split, docs/study.md, which no prior may train on, so that DiffLoss is never judged on photos
its prior has seen; also where a chosen prior is confirmed). ``--sources`` writes the credit table
(committed as datasets/prior_photos_v2_SOURCES.md).

    python scripts/fetch_license_checked_photos.py          # needs apt-get and dpkg-deb (Debian 12); 1 GB of cache
"""
import argparse
import bz2
import os
import pickle
import subprocess
from collections import Counter, namedtuple
from glob import glob
from os import path as osp

import cv2
import numpy as np

Photo = namedtuple('Photo', 'name package member split credit license evidence what')
LOMIRI = 'lomiri-wallpapers-16.04'
E = 'enlightenment-data'
E_BACKGROUNDS = 'usr/share/enlightenment/data/backgrounds'
E_CREDIT = 'Carsten Haitzler and contributors, Enlightenment'
PALAPELI = 'usr/share/palapeli/collection'
SKLEARN = 'usr/lib/python3/dist-packages/sklearn/datasets/images'
SCIPY = 'usr/lib/python3/dist-packages/scipy/misc'
SCIKIT_IMAGE = 'scikit-image (installed)'


def lomiri(name, split, credit, license):
    return Photo(f'lomiri_{name}', LOMIRI, f'usr/share/backgrounds/{name}.jpg', split, credit, license,
                 f'Files: 16.04/{name}.jpg\nCopyright: {credit}\nLicense: {license}\n', 'photo (wallpaper)')


def enlightenment(name, split, what):
    return Photo(f'e_{name}', E, f'{E_BACKGROUNDS}/{name}.edj', split, E_CREDIT, 'BSD-2-clause', 'BSD-2-clause', what)


def elementary(name, split, what):
    return Photo(f'efl_{name}', 'libelementary-data', f'usr/share/elementary/images/{name}.jpg', split,
                 'Enlightenment Developers (EFL)', 'BSD-2-clause', 'Files: *\nCopyright: 2002-2020, Enlightenment '
                 'Developers (see AUTHORS)\nLicense: BSD-2-clause', what)


def scikit_image(name, split, credit, license, evidence, what):
    """A scikit-image photo; ``evidence`` must occur in the docstring of its loader."""
    return Photo(f'skimage_{name}', SCIKIT_IMAGE, name, split, credit, license, evidence, what)


# evidence: text that must occur in the package's copyright file (or, 'FILE::text', in that file of the package)
PHOTOS = [
    lomiri('Picture_0B_by_freespace', 'train', 'Trevor "Freespace", 2018', 'CC-BY-4.0'),
    lomiri('Picture_1A_by_freespace', 'train', 'Trevor "Freespace", 2018', 'CC-BY-4.0'),
    lomiri('Wine_by_Jakkub_Mede', 'train', 'Jakub Mede, 2018', 'CC-BY-4.0'),
    lomiri('aitzgorri_by_Aitzol_Berasategi', 'train', 'Aitzol Berasategi, 2018', 'CC-BY-4.0'),
    lomiri('friends_by_Aitzol_Berasategi', 'train', 'Aitzol Berasategi, 2018', 'CC-BY-4.0'),
    lomiri('life_by_Aitzol_Berasategi', 'val', 'Aitzol Berasategi, 2018', 'CC-BY-4.0'),
    lomiri('picosdeeuropa_by_Aitzol_Berasategi', 'train', 'Aitzol Berasategi, 2018', 'CC-BY-4.0'),
    lomiri('seeding_by_Clements_Engelhardt', 'train', 'Clemens Engelhardt, 2018', 'CC0-1.0'),
    lomiri('sunset_by_Aitzol_Berasategi', 'train', 'Aitzol Berasategi, 2018', 'CC-BY-4.0'),
    enlightenment('Bamboo', 'train', 'photo: bamboo stems and leaves'),
    enlightenment('Foggy-Trees', 'train', 'photo: trees in fog, dark'),
    enlightenment('God-Rays', 'train', 'photo: sun rays through clouds'),
    enlightenment('Green-Maple', 'val', 'photo: maple leaves'),
    enlightenment('Lichen-Branches', 'train', 'photo: lichen on branches'),
    enlightenment('Mountain', 'train', 'photo: snowy peaks at dusk'),
    enlightenment('Peaks', 'train', 'photo: mountain ridge at night'),
    enlightenment('Red-Maple', 'train', 'photo: red maple leaves'),
    enlightenment('Sea-of-Lanterns', 'val', 'photo: many paper lanterns'),
    enlightenment('Snow-Trees', 'train', 'photo: birches on snow'),
    enlightenment('Spruce-Needles', 'train', 'photo: spruce branch close-up'),
    enlightenment('Sunset-Clouds', 'train', 'photo: clouds at sunset'),
    enlightenment('White-Flower', 'train', 'photo: frangipani flower'),
    enlightenment('Yellow-Flower', 'train', 'photo: yellow oleander flower'),
    elementary('mystrale', 'train', 'photo: dog'),
    elementary('mystrale_2', 'confirm', 'photo: dog in a field'),
    elementary('panel_01', 'confirm', 'photo: metal cabinet doors'),
    elementary('plant_01', 'confirm', 'photo: creeper on a wall'),
    elementary('rock_01', 'confirm', 'photo: stone wall'),
    elementary('rock_02', 'train', 'photo: stone wall'),
    elementary('sky_01', 'confirm', 'photo: clouds at sunset'),
    elementary('sky_02', 'train', 'photo: clouds'),
    elementary('sky_03', 'train', 'photo: cumulus cloud'),
    elementary('sky_04', 'train', 'photo: evening sky'),
    elementary('twofish', 'confirm', 'photo: man beside a fish drawing'),
    elementary('wood_01', 'confirm', 'photo: wood grain'),
    Photo('maldives_beach', 'sddm-theme-maldives', 'usr/share/sddm/themes/maldives/background.jpg', 'train',
          'Nevit Dilmen, 2008 (Wikimedia Commons)', 'CC-BY-3.0', 'Nevit Dilmen', 'photo: jetty and palm trees'),
    Photo('sklearn_china', 'python3-sklearn', f'{SKLEARN}/china.jpg', 'confirm', 'danielbuechele (Flickr), 2011',
          'CC-BY-2.0', f'{SKLEARN}/README.txt::creativecommons.org/licenses/by/2.0', 'photo: pagoda by a lake'),
    Photo('sklearn_flower', 'python3-sklearn', f'{SKLEARN}/flower.jpg', 'confirm', 'vultilion (Flickr), 2011', 'CC-BY-2.0',
          f'{SKLEARN}/README.txt::creativecommons.org/licenses/by/2.0', 'photo: dahlia'),
    Photo('scipy_face', 'python3-scipy', f'{SCIPY}/face.dat', 'confirm', 'public-domain-image.com, via SciPy',
          'public domain', f'{SCIPY}/_common.py::http://www.public-domain-image.com', 'photo: raccoon'),
    Photo('scipy_ascent', 'python3-scipy', f'{SCIPY}/ascent.dat', 'train', 'public-domain-image.com, via SciPy',
          'public domain', 'Files: scipy/misc/ascent.dat', 'photo (grey): people on stairs'),
    Photo('palapeli_cincinnati_bridge', 'palapeli-data', f'{PALAPELI}/cincinnati-bridge.jpg', 'train', 'Derek Jensen',
          'public domain', f'{PALAPELI}/cincinnati-bridge.desktop::License=Public Domain', 'photo: bridge at night'),
    Photo('palapeli_citrus_fruits', 'palapeli-data', f'{PALAPELI}/citrus-fruits.jpg', 'train',
          'US Department of Agriculture', 'public domain', f'{PALAPELI}/citrus-fruits.desktop::License=Public Domain',
          'photo: citrus slices'),
    Photo('palapeli_european_honey_bee', 'palapeli-data', f'{PALAPELI}/european-honey-bee.jpg', 'val', 'John Severns',
          'public domain', f'{PALAPELI}/european-honey-bee.desktop::License=Public Domain', 'photo: bee on an aster'),
    Photo('mpl_grace_hopper', 'python-matplotlib-data', 'usr/share/matplotlib/mpl-data/sample_data/grace_hopper.jpg',
          'confirm', 'U.S. Navy (official portrait of Grace Hopper), via Matplotlib', 'public domain',
          'Matplotlib only uses BSD compatible code', 'photo: portrait'),
    scikit_image('astronaut', 'train', 'NASA (Eileen Collins)', 'public domain', 'public domain', 'photo: portrait'),
    scikit_image('chelsea', 'confirm', 'Stefan van der Walt', 'CC0', 'CC0 by the photographer', 'photo: cat'),
    scikit_image('coffee', 'train', 'Rachel Michetti', 'CC0', 'CC0 by the photographer', 'photo: coffee cup'),
    scikit_image('rocket', 'train', 'SpaceX', 'public domain', 'public domain', 'photo: launch pad at dusk'),
    scikit_image('camera', 'train', 'Lav Varshney', 'CC0', 'CC0 by the photographer',
                 'photo (grey): man with a camera'),
    scikit_image('coins', 'val', 'Brooklyn Museum', 'no known copyright restrictions',
                 'No known copyright restrictions', 'photo (grey): Greek coins'),
    scikit_image('grass', 'train', 'linolafett (DeviantArt)', 'CC0', 'CC0 License', 'photo texture (grey): grass'),
    scikit_image('gravel', 'train', 'CC0Textures (Gravel04)', 'CC0', 'CC0 License', 'photo texture (grey): gravel'),
]


def run(command, cwd=None):
    return subprocess.run(command, cwd=cwd, check=True, capture_output=True, text=True).stdout


def unpack(package, cache):
    """The folder the package is unpacked in (downloaded and unpacked once), and its version."""
    debs = glob(osp.join(cache, 'debs', f'{package}_*.deb'))
    if not debs:
        os.makedirs(osp.join(cache, 'debs'), exist_ok=True)
        try:
            run(['apt-get', 'download', package], cwd=osp.join(cache, 'debs'))
        except subprocess.CalledProcessError as error:
            raise SystemExit(f"apt-get download {package} failed ({error.stderr.strip()}); run 'apt-get update' "
                             'first, on Debian 12 (bookworm) or a system that has this package.')
        debs = glob(osp.join(cache, 'debs', f'{package}_*.deb'))
    folder = osp.join(cache, 'unpacked', package)
    if not osp.isdir(folder):
        os.makedirs(folder)
        run(['dpkg-deb', '-x', debs[0], folder])
    return folder, run(['dpkg-deb', '-f', debs[0], 'Version']).strip()


def check_license(photo, folder):
    """Stop if the package no longer states the license the table gives (the evidence text is missing)."""
    if photo.package == SCIKIT_IMAGE:
        from skimage import data
        file, statement = f'the docstring of skimage.data.{photo.member}', getattr(data, photo.member).__doc__
        text = photo.evidence
    else:
        where, _, text = photo.evidence.rpartition('::')
        file = osp.join(folder, where) if where else osp.join(folder, 'usr/share/doc', photo.package, 'copyright')
        with open(file, encoding='utf-8', errors='replace') as f:
            statement = f.read()
    if text not in statement:
        raise SystemExit(f"{photo.name}: '{text}' is no longer in {file}; check the photo's license by hand and "
                         'update PHOTOS.')


def largest_jpeg(file):
    """The largest of the JPEG images an Enlightenment .edj (Eet) file holds: its full-resolution photo."""
    with open(file, 'rb') as f:
        content = f.read()
    starts, start = [], content.find(b'\xff\xd8\xff')
    while start >= 0:
        starts.append(start)
        start = content.find(b'\xff\xd8\xff', start + 1)
    best = None
    for begin, end in zip(starts, starts[1:] + [len(content)]):
        image = cv2.imdecode(np.frombuffer(content[begin:end], np.uint8), cv2.IMREAD_COLOR)
        if image is not None and (best is None or image.size > best.size):
            best = image
    return best


def read_photo(photo, folder):
    """The photo as a BGR uint8 array."""
    if photo.package == SCIKIT_IMAGE:
        from skimage import data
        image = getattr(data, photo.member)()
        return cv2.cvtColor(image, cv2.COLOR_RGB2BGR if image.ndim == 3 else cv2.COLOR_GRAY2BGR)
    file = osp.join(folder, photo.member)
    if file.endswith('.edj'):
        return largest_jpeg(file)
    if file.endswith('face.dat'):  # bz2-compressed raw 768 x 1024 RGB
        with open(file, 'rb') as f:
            return cv2.cvtColor(
                np.frombuffer(bz2.decompress(f.read()), np.uint8).reshape(768, 1024, 3), cv2.COLOR_RGB2BGR)
    if file.endswith('ascent.dat'):  # a pickled 512 x 512 grey image
        with open(file, 'rb') as f:
            return cv2.cvtColor(np.asarray(pickle.load(f)).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    return cv2.imread(file, cv2.IMREAD_COLOR)


def limit_short_side(image, max_short_side):
    height, width = image.shape[:2]
    scale = max_short_side / min(height, width)
    if scale >= 1:
        return image
    return cv2.resize(image, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_LANCZOS4)


def sources_table(rows):
    lines = [
        '# The photos of the next default prior (datasets/prior_photos_v2)', '',
        'Made by `scripts/fetch_license_checked_photos.py` from Debian 12 packages and the installed scikit-image; '
        'each photo keeps its own license, and each license allows shipping weights trained on it with credit '
        '(CC0, CC-BY, public domain; BSD-2-clause for the Enlightenment and EFL photos, whose packages license '
        'all their files so). Stored as PNG with the short side at most 1536 px (native size when smaller). '
        'Share-alike (CC-BY-SA), GPL, LGPL and FDL photos of the same packages are left out.', '',
        '| file | split | original size | stored size | package (version) | file in package | copyright / credit '
        '| license | what it shows |', '|---|---|---|---|---|---|---|---|---|'
    ]
    for photo, version, original, stored in rows:
        lines.append(
            f'| {photo.name}.png | {photo.split} | {original[1]}x{original[0]} | {stored[1]}x{stored[0]} | '
            f'{photo.package} ({version}) | {photo.member} | {photo.credit} | {photo.license} | {photo.what} |')
    splits = Counter(photo.split for photo, *_ in rows)
    licenses = Counter(photo.license for photo, *_ in rows)
    lines += [
        '', f'{len(rows)} photos: {splits["train"]} train, {splits["val"]} val, {splits["confirm"]} confirm. Licenses: ' +
        ', '.join(f'{name} {count}' for name, count in licenses.most_common()) + '.', ''
    ]
    return '\n'.join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--output', default='datasets/prior_photos_v2', help='output folder (default: %(default)s)')
    parser.add_argument('--cache',
                        default='datasets/prior_photos_v2/cache',
                        help='where the .deb files are downloaded and unpacked (default: %(default)s)')
    parser.add_argument('--max_short_side',
                        type=int,
                        default=1536,
                        help='downscale photos whose short side is '
                        'larger to this (default: %(default)s)')
    parser.add_argument('--sources',
                        default='datasets/prior_photos_v2_SOURCES.md',
                        help='the credit table to write (default: %(default)s)')
    args = parser.parse_args()
    rows = []
    for photo in PHOTOS:
        folder, version = (None, __import__('skimage').__version__) if photo.package == SCIKIT_IMAGE \
            else unpack(photo.package, args.cache)
        check_license(photo, folder)
        image = read_photo(photo, folder)
        if image is None:
            raise SystemExit(f'{photo.name}: cannot read {photo.member} of {photo.package}.')
        stored = limit_short_side(image, args.max_short_side)
        os.makedirs(osp.join(args.output, photo.split), exist_ok=True)
        cv2.imwrite(osp.join(args.output, photo.split, f'{photo.name}.png'), stored)
        rows.append((photo, version, image.shape[:2], stored.shape[:2]))
        print(f'{photo.split:5} {photo.name}: {image.shape[1]}x{image.shape[0]} -> {stored.shape[1]}x{stored.shape[0]}')
    with open(args.sources, 'w') as f:
        f.write(sources_table(rows))
    print(sources_table(rows).rsplit('\n', 2)[-2])


if __name__ == '__main__':
    main()
