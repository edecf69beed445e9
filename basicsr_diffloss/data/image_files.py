"""Which files are images: one suffix list for the datasets, the study and the data-preparation scripts."""
# basicsr's scandir matches suffixes case-sensitively: list both cases.
IMAGE_SUFFIXES = tuple(suffix for lower in ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')
                       for suffix in (lower, lower.upper()))
