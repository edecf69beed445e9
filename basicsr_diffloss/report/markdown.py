"""The comparison's Markdown: one metric table per test set and report.md."""
import math

from .evaluation import COLUMNS

RUNS = (('baseline', 'baseline'), ('diffloss', '+DiffLoss'))


def _cell(value, counts):
    if value is None:
        return '-'
    if math.isnan(value):
        return 'n/a'
    text = f'{value:.4f}'
    computed, total = counts or (1, 1)
    return text if computed == total else f'{text} ({computed}/{total} images)'


def metric_table(results):
    """A Markdown table for one test set: a row per run and a difference row; ``results[run]`` holds the
    ``values`` and ``counts`` of :func:`evaluate`."""
    columns = [(key, title, better) for key, title, better in COLUMNS
               if any(key in results[run]['values'] for run, _ in RUNS)]
    titles = [f"{title} {'↑' if better == 'higher' else '↓'}" for _, title, better in columns]
    lines = ['| run | ' + ' | '.join(titles) + ' |', '|---' * (len(columns) + 1) + '|']
    for run, label in RUNS:
        values, counts = results[run]['values'], results[run]['counts']
        lines.append(f'| {label} | ' + ' | '.join(_cell(values.get(key), counts.get(key)) for key, _, _ in columns)
                     + ' |')
    deltas = []
    for key, _, _ in columns:
        first, second = (results[run]['values'].get(key) for run, _ in RUNS)
        deltas.append('-' if first is None or second is None or math.isnan(first) or math.isnan(second) else
                      f'{second - first:+.4f}')
    lines.append('| +DiffLoss − baseline | ' + ' | '.join(deltas) + ' |')
    return '\n'.join(lines) + '\n'


METRIC_NOTES = """\
Metrics (↑: higher is better, ↓: lower is better). PSNR and SSIM as BasicSR computes them (calculate_psnr,
calculate_ssim) on RGB and on the Y channel of YCbCr (test_y_channel true), after cutting crop_border pixels.
NIQE (no-reference, BasicSR's, on Y) is n/a for images with fewer than two 96x96 blocks (one side < 192 px).
HaarPSI [0, 1], GMSD [0, ~0.35] and MS-SSIM [0, 1] come from the piq package (MS-SSIM is n/a below 161 px);
LPIPS and DISTS appear when the option file's val.metrics configures them (their weights are local files).
"(k/n images)": the mean over the k images where the metric could be computed.
"""


def report_markdown(header, tables, grids, curves):
    """report.md: ``header`` lines, then per test set its table and grid, then the training curves.

    Args:
        header (list[str]): Markdown lines describing the two runs.
        tables (dict): test set -> table Markdown.
        grids (dict): test set -> grid PNG path relative to the report folder (or None).
        curves (str | None): training curves PNG path relative to the report folder.
    """
    lines = ['# Baseline vs +DiffLoss', ''] + header + ['']
    for dataset, table in tables.items():
        lines += [f'## {dataset}', '', table]
        if grids.get(dataset):
            lines += [f'Crops where the two outputs differ most (same positions in every column): '
                      f'[{grids[dataset]}]({grids[dataset]})', '', f'![{dataset} crops]({grids[dataset]})', '']
    if curves:
        lines += ['## Training curves', '', f'[{curves}]({curves})', '', f'![training curves]({curves})', '']
    lines += ['## Metrics', '', METRIC_NOTES]
    return '\n'.join(lines)
