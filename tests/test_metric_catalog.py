"""The one metric table (basicsr_diffloss.metrics.METRICS): its directions, and that validation's start-up check,
the comparison report and the study read them from it."""
import logging

import pytest

from basicsr.utils.registry import METRIC_REGISTRY
from basicsr_diffloss.metrics import BETTER_BY_TYPE, METRICS, better_of, better_of_type, check_metric_options
from basicsr_diffloss.report.evaluation import COLUMNS, comparison_metrics
from basicsr_diffloss.report.markdown import metric_table
from study.statistics import paired_difference

LOWER = {'niqe', 'gmsd', 'lpips', 'dists', 'ciede2000'}


def test_directions_and_types():
    assert {name for name, info in METRICS.items() if info.better == 'lower'} == LOWER
    assert {info.better for info in METRICS.values()} == {'higher', 'lower'}
    assert {metric_type for metric_type, better in BETTER_BY_TYPE.items() if better == 'lower'} == {
        'calculate_niqe', 'calculate_niqe_or_nan', 'calculate_gmsd', 'calculate_lpips', 'calculate_dists',
        'calculate_ciede2000'}
    assert all(metric_type in METRIC_REGISTRY for metric_type in BETTER_BY_TYPE)
    assert better_of_type('calculate_psnr') == 'higher' and better_of_type('calculate_something_else') is None
    with pytest.raises(KeyError, match="'fid' is not in basicsr_diffloss.metrics.METRICS"):
        better_of('fid')


def test_the_report_reads_the_table():
    assert [(key, title) for key, title, _ in COLUMNS] == [
        ('psnr', 'PSNR'), ('psnr_y', 'PSNR-Y'), ('ssim', 'SSIM'), ('ssim_y', 'SSIM-Y'), ('niqe', 'NIQE'),
        ('haarpsi', 'HaarPSI'), ('gmsd', 'GMSD'), ('ms_ssim', 'MS-SSIM'), ('lpips', 'LPIPS'), ('dists', 'DISTS')]
    assert all(better == better_of(key) for key, _, better in COLUMNS)
    opt = {'scale': 4, 'val': {'metrics': {'lpips': {'type': 'calculate_lpips', 'better': 'higher'}}}}
    metrics = comparison_metrics(opt)
    assert {key for key, block in metrics.items() if block.get('better') == 'lower'} == LOWER - {'dists', 'ciede2000'}
    assert all('better' not in block for key, block in metrics.items() if key not in LOWER)
    run = dict(values={'psnr': 30.0, 'gmsd': 0.1}, counts={})
    assert metric_table({'baseline': run, 'diffloss': run}).split('\n')[0] == '| run | PSNR ↑ | GMSD ↓ |'


class Messages(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.mark.parametrize('metric_type, warned', [('calculate_gmsd', True), ('calculate_niqe_or_nan', True),
                                                 ('calculate_haarpsi', False), ('calculate_psnr', False)])
def test_validation_warns_about_a_lower_is_better_metric_without_better_lower(metric_type, warned):
    handler, logger = Messages(), logging.getLogger('basicsr')
    logger.addHandler(handler)
    try:
        check_metric_options({'val': {'metrics': {'m': dict(type=metric_type, crop_border=0)}}})
        check_metric_options({'val': {'metrics': {'m': dict(type=metric_type, crop_border=0, better='lower')}}})
    finally:
        logger.removeHandler(handler)
    assert [message for message in handler.messages if 'add better: lower' in message] == (
        [f'val.metrics.m: lower {metric_type} values are better; add better: lower so that the best value in the '
         'validation log is the lowest.'] if warned else [])


def test_the_study_counts_a_decrease_as_a_win_where_lower_is_better():
    runs = {('x', 0): {'a': {'gmsd': 0.1, 'haarpsi': 0.9}}, ('l1', 0): {'a': {'gmsd': 0.2, 'haarpsi': 0.8}}}
    assert paired_difference(runs, 'x', 'l1', 'gmsd')['wins'] == 1
    assert paired_difference(runs, 'x', 'l1', 'haarpsi')['wins'] == 1
