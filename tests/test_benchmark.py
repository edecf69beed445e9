"""scripts/benchmark.py in its tiny CPU mode: every configuration timed, counted and compared in one run."""
import importlib.util
import json
from os import path as osp

import pytest
import torch

from conftest import REPO

VARIANTS = ['default', 'fp32', 'bf16', 'bf16+checkpointing', 'bf16+encoder_only', 'bf16+every4', 'bf16+score_difference']


@pytest.fixture(scope='module')
def benchmark():
    spec = importlib.util.spec_from_file_location('benchmark', osp.join(REPO, 'scripts', 'benchmark.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_benchmark(benchmark, *argv):
    """``benchmark.main(argv)`` without touching the caller's random state."""
    with torch.random.fork_rng(devices=[]):
        return benchmark.main(list(argv))


def table_rows(markdown):
    """The cells of each row of the markdown table, by column name."""
    lines = [line for line in markdown.splitlines() if line.startswith('|')]
    columns = [cell.strip() for cell in lines[0].strip('|').split('|')]
    return [dict(zip(columns, (cell.strip() for cell in line.strip('|').split('|')))) for line in lines[2:]]


@pytest.fixture(scope='module')
def compared(benchmark, tmp_path_factory):
    """The tiny table for EDSR: its JSON record and its markdown."""
    folder = tmp_path_factory.mktemp('benchmark')
    run_benchmark(benchmark, '--tiny', '--restorers', 'edsr', '--steps', '1', '--variants', *VARIANTS, '--out',
                  str(folder / 'table.md'), '--json', str(folder / 'table.json'))
    return json.loads((folder / 'table.json').read_text()), (folder / 'table.md').read_text()


def test_table_lists_every_configuration_with_times_and_flops(compared):
    record, markdown = compared
    expected = ['l1', 'l1+vgg'] + [f'l1+diffloss tiny {variant}' for variant in VARIANTS]
    assert [row['name'] for row in record['rows']] == expected
    table = table_rows(markdown)
    assert [(row['loss'], row['variant']) for row in table] == [('l1', ''), ('l1+vgg', '')] + [
        ('l1+diffloss', variant) for variant in VARIANTS]
    assert all(row['batch x GT'] == '2 x 32^2' for row in table)
    for row in record['rows']:
        assert row['ms'] > 0 and row['flops'] > 0 and row['x_floor'] > 0
        assert row['peak_gib'] >= 0  # CPU: resident memory above the process's before the configuration
    diffloss_rows = {row['variant']: row for row in table if row['loss'] == 'l1+diffloss'}
    assert diffloss_rows['default']['gradient'] == 'score_difference'  # the package default, stated in its row
    assert diffloss_rows['default']['prior dtype'] in ('float32', 'bfloat16')
    assert all(row['gradient'] == 'backprop' for name, row in diffloss_rows.items() if 'score_difference' not in name
               and name != 'default')
    assert 'Command: `python' in markdown and '--tiny --restorers edsr' in markdown
    assert set(record['matmul_tflops']) == {'float32', 'bfloat16'} and min(record['matmul_tflops'].values()) > 0


def test_ratios_are_the_times_divided(compared):
    record, markdown = compared
    rows = {row['name']: row for row in record['rows']}
    l1, vgg = rows['l1'], rows['l1+vgg']
    for row, cells in zip(record['rows'], table_rows(markdown)):
        assert row['x_l1'] == pytest.approx(row['ms'] / l1['ms'])
        assert row['x_vgg'] == pytest.approx(row['ms'] / vgg['ms'])
        assert float(cells['x L1']) == pytest.approx(row['ms'] / l1['ms'], abs=0.006)
        assert float(cells['ms/step']) == pytest.approx(row['ms'], abs=0.06)
    rate = record['matmul_tflops']['bfloat16'] * 1e12
    bf16 = rows['l1+diffloss tiny bf16']
    assert bf16['diffloss_x_floor'] == pytest.approx(
        (bf16['ms'] - l1['ms']) / 1000 / ((bf16['flops'] - l1['flops']) / rate), rel=1e-6)
    assert 'diffloss_x_floor' not in l1 and bf16['prior_parameters'] > 0


def test_flops_follow_what_each_variant_computes(compared):
    rows = {row['name']: row for row in compared[0]['rows']}
    l1 = rows['l1']['flops']
    full = rows['l1+diffloss tiny bf16']['flops']
    assert full > l1 and rows['l1+vgg']['flops'] > l1
    assert rows['l1+diffloss tiny fp32']['flops'] == full  # FLOPs do not depend on the dtype
    assert rows['l1+diffloss tiny bf16+checkpointing']['flops'] == full  # recomputation is no part of the floor
    assert l1 < rows['l1+diffloss tiny bf16+encoder_only']['flops'] < full  # no decoder
    assert l1 < rows['l1+diffloss tiny bf16+score_difference']['flops'] < full  # no backward through the UNet
    assert rows['l1+diffloss tiny bf16+every4']['flops'] - l1 == pytest.approx((full - l1) / 4)


def test_compiled_variants_are_counted_eager(benchmark):
    env = benchmark.Environment(torch.device('cpu'), True, {'tiny': benchmark.build_prior('tiny')})
    eager, compiled = (benchmark.Configuration('edsr', 1, 16, 'l1+diffloss', 'tiny', variant)
                       for variant in ('bf16', 'bf16+compile'))
    with torch.random.fork_rng(devices=[]):
        assert benchmark.counted_flops(compiled, env) == benchmark.counted_flops(eager, env) > 0


def test_a_variant_with_an_option_diffloss_lacks_stops_the_run(benchmark, monkeypatch):
    monkeypatch.setitem(benchmark.VARIANTS, 'bf16', dict(dtype='bf16', no_such_option=True))
    with pytest.raises(SystemExit, match="variant 'bf16'.*no_such_option"):
        run_benchmark(benchmark, '--tiny', '--variants', 'bf16')


def test_scaling_mode_writes_a_plot_and_both_sweeps(benchmark, tmp_path):
    plot = tmp_path / 'scaling.png'
    record = run_benchmark(benchmark, '--tiny', '--steps', '1', '--scaling', '--restorers', 'edsr', '--variants', 'bf16',
                           '--plot', str(plot))
    assert plot.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n' and plot.stat().st_size > 10000
    assert [(row['gt_size'], row['loss']) for row in record['size']] == [
        (16, 'l1'), (16, 'l1+diffloss'), (32, 'l1'), (32, 'l1+diffloss')]
    assert [(row['batch'], row['loss']) for row in record['batch']] == [
        (1, 'l1'), (1, 'l1+diffloss'), (2, 'l1'), (2, 'l1+diffloss')]
    rows = record['size'] + record['batch']
    l1_ms = {(row['batch'], row['gt_size']): row['ms'] for row in rows if row['loss'] == 'l1'}
    for row in rows:
        assert row['ms'] > 0 and row['x_l1'] == pytest.approx(row['ms'] / l1_ms[row['batch'], row['gt_size']])
