"""The study's statistics, its fixed split, its calibration and a tiny end-to-end run of scripts/run_study.py."""
import argparse
import json
import math
import subprocess
import sys
from os import path as osp

import cv2
import numpy as np
import pytest
import torch

from basicsr_diffloss.losses import PRESETS, DiffLoss
import run_study
from study.data import VALIDATION_PHOTOS, Task, split_photos, training_batches
from study.settings import SETTINGS, StudyLoss
from study.statistics import paired_difference
from conftest import REPO, smooth_image
from test_conflict_guard import BackwardCounter, restorer_and_batch


def test_paired_difference_averages_seeds_per_image_and_counts_wins():
    runs = {('l1', 0): {'a': dict(psnr_y=30.0, niqe=5.0), 'b': dict(psnr_y=20.0, niqe=6.0)},
            ('l1', 1): {'a': dict(psnr_y=31.0, niqe=5.0), 'b': dict(psnr_y=21.0, niqe=6.0)},
            ('x', 0): {'a': dict(psnr_y=30.5, niqe=4.0), 'b': dict(psnr_y=19.0, niqe=6.5)},
            ('x', 1): {'a': dict(psnr_y=31.5, niqe=math.nan), 'b': dict(psnr_y=21.0, niqe=6.5)}}
    psnr = paired_difference(runs, 'x', 'l1', 'psnr_y')
    assert psnr['per_seed'] == [-0.25, 0.25]  # seed 0: (+0.5 - 1.0) / 2, seed 1: (+0.5 + 0) / 2
    assert psnr['mean'] == pytest.approx(0.0) and psnr['wins'] == 1 and psnr['images'] == 2
    assert psnr['se'] == pytest.approx(np.std([0.5, -0.5], ddof=1) / math.sqrt(2))
    niqe = paired_difference(runs, 'x', 'l1', 'niqe')  # image a has a NaN: left out; lower is better
    assert niqe['images'] == 1 and niqe['mean'] == pytest.approx(0.5) and niqe['wins'] == 0
    assert paired_difference(runs, 'y', 'l1', 'psnr_y') is None


def test_versus_compares_two_settings_paired_per_image_and_skips_tasks_without_both():
    def metrics(value):
        return {metric: value for metric, _, _ in run_study.DIFFERENCES}

    runs = {('new', 0): {'a': metrics(30.5), 'b': metrics(20.0)}, ('old', 0): {'a': metrics(30.0), 'b': metrics(20.5)},
            ('new', 1): {'a': metrics(31.5), 'b': metrics(21.0)}, ('old', 1): {'a': metrics(31.0), 'b': metrics(21.0)}}
    table = run_study.versus_table({'sr4': runs, 'dn25': {('new', 0): runs[('new', 0)]}}, 'new', 'old')
    rows = [line for line in table.splitlines() if line.startswith('| sr4') or line.startswith('| dn25')]
    # image a: +0.5 on both seeds; image b: -0.5 then 0 -> -0.25; mean +0.125, one win of two
    assert len(rows) == 1 and rows[0].startswith('| sr4 | +0.125 ± ') and '| 1/2 | +0.000, +0.250 |' in rows[0]
    assert run_study.versus_table({'dn25': {('new', 0): runs[('new', 0)]}}, 'new', 'old') == \
        'No task has runs of both new and old.'


def test_versus_refuses_a_setting_against_itself(monkeypatch, capsys):
    monkeypatch.setattr('sys.argv', ['run_study.py', '--report_only', '--versus', 'l1', 'l1'])
    with pytest.raises(SystemExit):
        run_study.main()
    assert '--versus l1 l1: two different settings' in capsys.readouterr().err


def test_split_is_fixed_by_name():
    photos = {name: None for name in ('mate_Aqua', 'mate_Dune', 'other', 'another')}
    train, validation = split_photos(photos)
    assert sorted(validation) == ['mate_Aqua', 'mate_Dune'] and sorted(train) == ['another', 'other']
    with pytest.raises(ValueError, match='photo split'):
        split_photos({'other': None})


def test_batches_repeat_for_a_seed_and_differ_between_seeds():
    photos = {'p': np.random.default_rng(0).random((80, 90, 3), dtype=np.float32)}
    task = Task('sr4')
    first, again, other = (next(training_batches(photos, task, 2, seed)) for seed in (0, 0, 1))
    assert torch.equal(first[1], again[1]) and torch.equal(first[0], again[0]) and not torch.equal(first[1], other[1])
    assert first[0].shape == (2, 3, 16, 16) and first[1].shape == (2, 3, 64, 64)


@pytest.mark.parametrize('name', list(SETTINGS))
def test_every_setting_builds_and_names_every_method_option(tiny_prior, name):
    setting = SETTINGS[name]
    if setting.get('extra') == 'diffloss':
        assert set(PRESETS['default']) <= set(setting['diffusion'])  # a change of defaults cannot change it
    loss = StudyLoss(setting, prior=tiny_prior, seed=0, crop_size=16)
    output, gt = torch.rand(2, 3, 16, 16, requires_grad=True), torch.rand(2, 3, 16, 16)
    terms = loss.terms(output, gt, current_iter=1000)
    assert list(terms) == (['l_pix', 'l_extra'] if 'extra' in setting else ['l_pix'])


def test_a_setting_that_joins_late_gives_a_zero_term_before_it_joins(tiny_prior):
    loss = StudyLoss(SETTINGS['strength_2_guard_0_late'], prior=tiny_prior, seed=0, crop_size=16, total_iter=10)
    output, gt = torch.rand(2, 3, 16, 16, requires_grad=True), torch.rand(2, 3, 16, 16)
    before, after = loss.terms(output, gt, current_iter=3), loss.terms(output, gt, current_iter=4)
    assert before['l_extra'].item() == 0 and after['l_extra'].item() > 0  # joins at 40% of 10
    assert isinstance(before['l_extra'], torch.Tensor)  # the run's log reads every term with .item()


@pytest.mark.filterwarnings("ignore:Full backward hook is firing")
def test_a_guarded_setting_differentiates_the_restorer_twice_per_step_as_a_model_does(tiny_prior):
    """Under the guard the study's step costs what a model's does (two restorer backward passes, not three), with the
    gradient of the pixel loss plus the projected term."""
    net, lq, gt = restorer_and_batch()
    counter, parameters = BackwardCounter(net), list(net.parameters())
    loss = StudyLoss(SETTINGS['strength_2_guard_0'], prior=tiny_prior, seed=0, crop_size=16)
    by_hand = DiffLoss(prior=tiny_prior, seed=0, crop_size=16, **SETTINGS['strength_2_guard_0']['diffusion'])
    for iteration in (1, 2, 3):
        output = net(lq)
        counter.count = 0
        terms = loss.terms(output, gt, iteration, parameters)
        assert list(terms) == ['l_pix', 'l_extra'] and counter.count == 2
        mine = torch.autograd.grad(sum(terms.values()), parameters)
        pixel = torch.nn.functional.l1_loss(output, gt)
        theirs = torch.autograd.grad(pixel + sum(by_hand.terms(output, gt, iteration, pixel, parameters).values()),
                                     parameters)
        for one, other in zip(mine, theirs):
            assert torch.allclose(one, other, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize('name', ['l1+lowpass', 'eps', 'score_difference', 'sd_warmup'])
def test_calibration_sets_the_gradient_ratio(tiny_prior, name):
    photos = {'p': np.random.default_rng(0).random((80, 90, 3), dtype=np.float32)}
    task = Task('dn25')
    batches = training_batches(photos, task, 2, 0)
    loss = StudyLoss(SETTINGS[name], prior=tiny_prior, seed=0, crop_size=16)
    batch = next(batches)
    loss.calibrate([batch], task)
    output = task.start_output(*batch[:1], batch[1].shape).requires_grad_(True)
    terms = loss.terms(output, batch[1], current_iter=10**6)  # after any warm-up: the ratio holds at full strength
    pixel, extra = (torch.autograd.grad(value, output, retain_graph=True)[0].norm() for value in terms.values())
    assert extra / pixel == pytest.approx(SETTINGS[name]['ratio'], rel=1e-3)


def test_the_paper_setting_keeps_the_authors_absolute_weights_and_whole_t_range(tiny_prior):
    photos = {'p': np.random.default_rng(0).random((80, 90, 3), dtype=np.float32)}
    task = Task('dn25')
    loss = StudyLoss(SETTINGS['paper'], prior=tiny_prior, seed=0, crop_size=16)
    assert loss.calibrate([next(training_batches(photos, task, 2, 0))], task) is None and loss.weight == 1.0
    reference = DiffLoss(prior=tiny_prior, preset='paper', crop_size=16)  # what a user's `preset: paper` runs
    for name in ('weights', 't_range', 'gradient', 'space', 't_weighting'):
        assert getattr(loss.diffloss, name) == getattr(reference, name), name
    assert loss.diffloss.strength is None and loss.diffloss.guard is None and loss.diffloss.t_range == (0, 999)


def test_study_script_runs_and_reports(tmp_path, tiny_prior_folder):
    photos = tmp_path / 'photos'
    photos.mkdir()
    rng = np.random.default_rng(0)
    for name in (VALIDATION_PHOTOS[0], 'train_a', 'train_b'):
        cv2.imwrite(str(photos / f'{name}.png'), smooth_image(rng, 160, 160))
    confirmation = tmp_path / 'confirmation'
    confirmation.mkdir()
    cv2.imwrite(str(confirmation / 'other_source.png'), smooth_image(rng, 96, 128))
    output = tmp_path / 'study'
    command = [sys.executable, osp.join(REPO, 'scripts', 'run_study.py'), '--tasks', 'sr4', '--settings', 'l1', 'eps',
               'strength_1', '--seeds', '0', '1', '--iters', '2', '--batch', '2', '--num_feat', '8', '--num_block',
               '1', '--prior', str(tiny_prior_folder), '--crop_size', '16', '--photos', str(photos), '--photo_scale',
               '1', '--log_every', '1', '--output', str(output), '--confirm_photos', str(confirmation)]
    # The run and two refused command lines (refused before anything is written), side by side: each interpreter
    # spends seconds importing on one core.
    run, split, unused = (subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                           text=True)
                          for args in (command, command[:5] + ['strength_2_split_prior'] + command[5 + 3:],
                                       command + ['--split_prior', str(tiny_prior_folder)]))
    run_errors, split_errors, unused_errors = (process.communicate(timeout=300)[1] for process in (run, split, unused))
    assert run.returncode == 0, run_errors[-3000:]
    record = json.loads((output / 'runs' / 'sr4' / 'eps_s1.json').read_text())
    assert record['weight'] > 0 and set(record['metrics']) == {VALIDATION_PHOTOS[0]} and len(record['log']) == 2
    assert set(record['confirmation_metrics']) == {'other_source'}  # at native resolution, reported apart
    relative = json.loads((output / 'runs' / 'sr4' / 'strength_1_s0.json').read_text())
    assert set(relative['weight']) == {'l_diff_eps'} and relative['ratio'] == 1.0  # measured by DiffLoss in training
    assert cv2.imread(str(output / 'gt' / 'sr4' / f'{VALIDATION_PHOTOS[0]}.png')).shape == (160, 160, 3)  # whole
    assert split.returncode != 0 and '--split_prior is required' in split_errors
    assert unused.returncode != 0 and 'none of --settings uses it' in unused_errors
    report = (output / 'study.md').read_text()
    assert '| eps |' in report and 'grid_sr4_eps.png' in report and (output / 'grid_sr4_eps.png').is_file()
    assert '| dSSIM | dSSIM-Y |' in report  # SSIM on RGB and on Y
    assert '## sr4, confirmation split' in report and (output / 'grid_sr4_confirmation_eps.png').is_file()
    assert '## The default rule on the tuning split' in report
    # A metric added after a run was recorded is computed from the run's saved (lossless) outputs when the report is
    # written: equal to what the run itself measured.
    record_path = output / 'runs' / 'sr4' / 'eps_s1.json'
    measured = json.loads(record_path.read_text())
    for values in (*measured['metrics'].values(), *measured['confirmation_metrics'].values()):
        del values['ssim'], values['niqe']
    record_path.write_text(json.dumps(measured))
    run_study.write_report(argparse.Namespace(output=str(output), doc=None, section=None, versus=None))
    restored = json.loads(record_path.read_text())
    for key in ('metrics', 'confirmation_metrics'):
        for image_name, values in record[key].items():
            assert set(restored[key][image_name]) == set(values)
            assert restored[key][image_name] == pytest.approx(values, nan_ok=True)
    # ... and where those outputs are gone, the report stops and says which record to delete.
    stripped = json.loads(record_path.read_text())
    del stripped['metrics'][VALIDATION_PHOTOS[0]]['ssim']
    record_path.write_text(json.dumps(stripped))
    (output / 'outputs' / 'sr4' / 'eps_s1' / f'{VALIDATION_PHOTOS[0]}.png').unlink()
    with pytest.raises(SystemExit, match='eps_s1.json lacks .*delete the record'):
        run_study.write_report(argparse.Namespace(output=str(output), doc=None, section=None, versus=None))
    record_path.write_text(json.dumps(restored))
    # A run still writing its outputs when the report is written (two study jobs sharing the output folder, seed 1
    # of eps done and seed 0 not): the report reads only finished runs, so no grid from the half-written folder.
    (output / 'runs' / 'sr4' / 'eps_s0.json').unlink()
    for image in (output / 'outputs' / 'sr4' / 'eps_s0').iterdir():
        image.unlink()
    run_study.write_report(argparse.Namespace(output=str(output), doc=None, section=None, versus=None))
    report = (output / 'study.md').read_text()
    assert '| eps |' in report and 'grid_sr4_eps.png' not in report
    # The report also goes into a doc, between its markers, headed by the command, date and machine.
    doc = tmp_path / 'study_doc.md'
    doc.write_text('# Study\n\n<!-- study:v5 -->\nold table\n<!-- /study:v5 -->\n\nafter\n')
    run_study.write_report(argparse.Namespace(output=str(output), doc=str(doc), section='v5', versus=None))
    written = doc.read_text()
    assert 'old table' not in written and written.endswith('<!-- /study:v5 -->\n\nafter\n')
    assert 'Written by `python scripts/run_study.py' in written and '#### sr4, tuning split' in written


def test_the_default_keeps_psnr_on_every_task_then_has_the_best_niqe_and_colour_error():
    from run_study import default_choice

    def images(psnr, niqe, ciede):  # two images, PSNR spread +/- 0.1 around the mean
        return {'a': dict(psnr=psnr - 0.1, niqe=niqe, ciede2000=ciede),
                'b': dict(psnr=psnr + 0.1, niqe=niqe, ciede2000=ciede)}

    baseline = images(30.0, 5.0, 3.0)
    sr = {('l1', 0): baseline, ('strength_2', 0): images(30.2, 5.2, 2.9), ('strength_2_guard_0.1', 0):
          images(30.1, 5.1, 2.9), ('strength_1', 0): images(30.05, 5.0, 3.0)}
    low_light = {('l1', 0): baseline, ('strength_2', 0): images(25.0, 4.0, 9.0),  # better NIQE, loses PSNR
                 ('strength_2_guard_0.1', 0): images(29.95, 4.9, 3.0), ('strength_1', 0): images(29.0, 5.0, 3.0)}
    assert '**strength_2_guard_0.1**' in default_choice({'sr4': sr, 'll': low_light})
    assert 'keep PSNR: strength_2, strength_1, strength_2_guard_0.1' not in default_choice({'sr4': sr, 'll': low_light})
    collapsed = {('l1', 0): baseline, ('strength_2', 0): images(25.0, 4.0, 9.0),
                 ('strength_2_guard_0.1', 0): images(29.0, 4.9, 3.0), ('strength_1', 0): images(28.0, 5.0, 3.0)}
    assert 'the safest (highest worst-task dPSNR): **strength_2_guard_0.1**' in default_choice({'ll': collapsed})


def test_low_light_task_darkens_with_a_colour_cast_and_noise_reproducibly():
    gt = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 0.8 + 0.2
    task = Task('ll')
    first, again = (task.degrade(gt, torch.Generator().manual_seed(1)) for _ in range(2))
    assert torch.equal(first, again) and first.min() >= 0 and first.max() <= 1
    assert first.mean() < 0.35 * gt.mean()  # gain <= 0.35 and gamma >= 1.6 darken
    channel_means = first.mean(dim=(2, 3)) / gt.clamp(0, 1).pow(2).mean(dim=(2, 3))
    assert (channel_means.max(dim=1).values / channel_means.min(dim=1).values).max() > 1.02  # per-channel gains
    assert task.scale == 1 and task.gt_patch == 64 and Task('ll', 48).gt_patch == 48


@pytest.mark.parametrize('name', ['haze', 'rain'])
def test_haze_and_rain_tasks_run_the_package_degradation_per_image_reproducibly(name):
    """Each image of the batch gets the package's degradation (at its default options) with its own numpy generator
    seeded from the batch's torch generator: same generator, same images; haze veils (brighter, less contrast),
    rain adds bright streaks."""
    gt = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 0.5
    task = Task(name)
    first, again = (task.degrade(gt, torch.Generator().manual_seed(1)) for _ in range(2))
    other = task.degrade(gt, torch.Generator().manual_seed(2))
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert first.shape == gt.shape and first.dtype == torch.float32 and first.min() >= 0 and first.max() <= 1
    assert (first >= gt - 1e-6).all()  # airlight >= 0.7 > gt and added streaks only brighten
    assert not torch.equal(first[0], first[1] - gt[1] + gt[0])  # drawn per image
    assert task.scale == 1 and task.crop_border == 0 and task.gt_patch == 64
    if name == 'haze':
        assert first.mean() > gt.mean() + 0.05 and (first.std(dim=(1, 2, 3)) < gt.std(dim=(1, 2, 3))).all()
