"""The low-light sweep's red trace: probing the outputs leaves training untouched, and the trace table reads the
records of one configuration."""
import json
import os
from types import SimpleNamespace

import pytest
import torch

import low_light_sweep
from basicsr_diffloss.archs.iat_arch import IAT


def test_probing_the_red_leaves_the_restorer_as_it_was():
    torch.manual_seed(0)
    restorer = IAT(in_dim=3, with_global=True, type='lol')
    before = {name: value.clone() for name, value in restorer.state_dict().items()}
    red = low_light_sweep.probe_red(restorer, 0.1 * torch.rand(2, 3, 32, 32))
    assert 0 <= red <= 255 and restorer.training
    for name, value in restorer.state_dict().items():  # batch-norm statistics included
        assert torch.equal(value, before[name]), name


def test_the_trace_table_has_a_column_per_setting_of_the_config(tmp_path):
    config, runs = low_light_sweep.config_name(9), tmp_path / 'runs'
    os.makedirs(runs / config)
    for setting, reds in (('l1', [3, 60]), ('default_at_once', [2, 1])):
        record = dict(config=config, setting=setting, iters=40, seed=0, red_trace=[[20, reds[0]], [40, reds[1]]],
                      probe_gt_red=128.0)
        (runs / config / f'{setting}.json').write_text(json.dumps(record))
    doc = tmp_path / 'doc.md'
    doc.write_text('<!-- low-light-red-trace -->\n<!-- /low-light-red-trace -->\n')
    low_light_sweep.trace_report(SimpleNamespace(report=str(runs), trace=9, doc=str(doc), section=None))
    written = doc.read_text()
    assert '| iteration | default_at_once | l1 |' in written and '| 40 | 1 | 60 |' in written
    assert "ground truth's: 128.0" in written
    with pytest.raises(SystemExit, match='no run of config'):
        low_light_sweep.trace_report(SimpleNamespace(report=str(runs), trace=0, doc=None, section=None))


def test_the_sweep_table_has_a_column_per_setting_run_and_writes_the_section_named(tmp_path):
    config, runs = low_light_sweep.config_name(9), tmp_path / 'runs'
    os.makedirs(runs / config)
    for setting, psnr, red in (('l1', 17.0, 120), ('default', 17.5, 125), ('default_at_once', 9.0, 1)):
        record = dict(config=config, setting=setting, iters=1500, seed=0, lr=2e-4, mean_psnr=psnr,
                      channel_means_rgb=[red, 100, 100])
        (runs / config / f'{setting}.json').write_text(json.dumps(record))
    doc = tmp_path / 'doc.md'
    doc.write_text('<!-- low-light-sweep -->\nkept\n<!-- /low-light-sweep -->\n<!-- long -->\n<!-- /long -->\n')
    low_light_sweep.report(SimpleNamespace(report=str(runs), before=None, doc=str(doc), section='long'))
    written = doc.read_text()
    assert 'kept' in written and '1500 iterations' in written and 'Adam lr 2e-4' in written
    assert ('| config | L1 PSNR | red (L1) | default PSNR (vs L1) | red (default) | default_at_once PSNR (vs L1) | '
            'red (default_at_once) |') in written
    assert f'| {config} | 17.00 | 120 | 17.50 (+0.50) | 125 | 9.00 (-8.00) | 1 |' in written


def test_records_of_different_runs_are_not_tabled_together(tmp_path):
    runs = tmp_path / 'runs'
    for index, (setting, iters) in enumerate((('l1', 400), ('default', 1500))):
        folder = runs / low_light_sweep.config_name(index)
        os.makedirs(folder)
        record = dict(config=folder.name, setting=setting, iters=iters, seed=0, lr=2e-4, mean_psnr=15.0,
                      channel_means_rgb=[100, 100, 100])
        (folder / f'{setting}.json').write_text(json.dumps(record))
    with pytest.raises(SystemExit, match=r'different \(iterations, seed, lr\).*\(400, 0, 0.0002\)'):
        low_light_sweep.report(SimpleNamespace(report=str(runs), before=None, doc=None, section=None))


@pytest.mark.parametrize('argv, message', [
    (['--report', 'runs', '--section', 'long'], '--section names where --doc writes'),
    (['--trace', '9'], '--trace reads finished runs'),
    (['--doc', 'docs/study.md'], '--doc reads finished runs'),
    (['--report', 'runs', '--trace', '9', '--before', 'old'], '--before goes with the sweep table'),
])
def test_report_options_without_a_report_are_refused_before_anything_trains(monkeypatch, capsys, argv, message):
    monkeypatch.setattr('sys.argv', ['low_light_sweep.py', *argv])
    monkeypatch.setattr(low_light_sweep, 'run', lambda args: pytest.fail('it trained'))
    with pytest.raises(SystemExit):
        low_light_sweep.main()
    assert message in capsys.readouterr().err
