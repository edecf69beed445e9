"""scripts/benchmark.py in its tiny CPU mode: every configuration is timed, counted and compared in one run."""
import json
import subprocess
import sys
from os import path as osp

import pytest

from conftest import REPO

SCRIPT = osp.join(REPO, 'scripts', 'benchmark.py')


def test_benchmark_table_has_every_configuration_with_consistent_ratios(tmp_path):
    variants = ['fp32', 'bf16+encoder_only', 'bf16+every4', 'bf16+score_difference']
    output = tmp_path / 'rows.json'
    subprocess.run([sys.executable, SCRIPT, '--tiny', '--restorers', 'edsr', '--variants', *variants, '--json',
                    str(output), '--out', str(tmp_path / 'table.md')], check=True, timeout=300)
    rows = {row['loss']: row for row in json.loads(output.read_text())}
    assert set(rows) == {'l1', 'l1+vgg'} | {f'l1+diffloss tiny {variant}' for variant in variants}
    l1, vgg = rows['l1'], rows['l1+vgg']
    for row in rows.values():
        assert row['ms'] > 0 and row['flops'] > 0 and row['x_floor'] > 0
        assert row['x_l1'] == pytest.approx(row['ms'] / l1['ms'])
        assert row['x_vgg'] == pytest.approx(row['ms'] / vgg['ms'])
    full, encoder, every4, score = (rows[f'l1+diffloss tiny {variant}'] for variant in variants)
    assert full['flops'] > l1['flops'] and full['prior_parameters'] > 0 and 'diffloss_x_floor' in full
    assert encoder['flops'] < full['flops'] and score['flops'] < full['flops']  # no decoder / no UNet backward
    assert every4['flops'] - l1['flops'] == pytest.approx((full['flops'] - l1['flops']) / 4, rel=0.01)
    assert '| edsr | 2 x 32^2 | l1+diffloss tiny fp32 |' in (tmp_path / 'table.md').read_text()


def test_scaling_mode_writes_a_plot(tmp_path):
    plot, curves = tmp_path / 'scaling.png', tmp_path / 'scaling.json'
    subprocess.run([sys.executable, SCRIPT, '--tiny', '--scaling', '--restorers', 'edsr', '--variants', 'fp32',
                    '--plot', str(plot), '--json', str(curves)], check=True, timeout=300)
    assert plot.stat().st_size > 10000
    data = json.loads(curves.read_text())
    assert [point['size'] for point in data['size l1+diffloss']] == [16, 32]
    assert [point['batch'] for point in data['batch l1']] == [1, 2]
