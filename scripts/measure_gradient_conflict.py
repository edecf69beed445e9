"""How a study setting's extra term pulls against the pixel loss while a restorer trains: the measurements behind the
low-light failure (docs/study.md, "Why DiffLoss stopped a low-light restorer").

It trains one study run (scripts/run_study.py's task, restorer, batches and loss) and, at the chosen iterations,
measures on that iteration's batch, before the optimiser step:

- on the restored image: the norm of the pixel loss's gradient and of the extra term's (at its weight), their
  cosine, and each one's per-channel mean (the part that changes brightness and colour);
- over ``--draws`` draws of the term's noise and t on the same batch: the norm of the mean gradient over the mean of
  the norms (1: every draw pulls the same way; 1/sqrt(draws): pure noise);
- on the restorer's parameters, per top-level module: the norm of each loss's gradient and their cosine.

    OMP_NUM_THREADS=1 python scripts/measure_gradient_conflict.py --task ll --setting strength_2 --batch 4 \
        --patch 48 --lr 2e-4 --photos ../shared/data/photos --at 1 50 100 300 600 1000 --output results/conflict.json

Run it from the repository root or scripts/. Prints one line per measurement and writes them as JSON.
"""
import argparse
import json
import os
import sys
from os import path as osp

import torch
import torch.nn.functional as F

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import basicsr_diffloss  # noqa: E402,F401  (repairs basicsr and registers everything)
from basicsr_diffloss.priors import DiffusionPrior  # noqa: E402
from run_study import build_restorer  # noqa: E402
from study.data import TASKS, Task, load_photos, split_photos, training_batches  # noqa: E402
from study.settings import SETTINGS, StudyLoss  # noqa: E402


def cosine(a, b):
    return F.cosine_similarity(a.flatten(), b.flatten(), dim=0, eps=1e-30).item()


def measure(restorer, loss, lq, gt, iteration, draws):
    """The measurements of one batch (see the module docstring)."""
    output = restorer(lq)
    terms = loss.terms(output, gt, iteration)
    pixel, extra = terms['l_pix'], terms['l_extra']
    g_pixel, g_extra = (torch.autograd.grad(value, output, retain_graph=True)[0] for value in (pixel, extra))
    record = dict(iter=iteration, l_pix=pixel.item(), l_extra=extra.item(),
                  output_norm=dict(pixel=g_pixel.norm().item(), extra=g_extra.norm().item()),
                  output_cosine=cosine(g_pixel, g_extra),
                  channel_mean=dict(pixel=g_pixel.mean(dim=(0, 2, 3)).tolist(),
                                    extra=g_extra.mean(dim=(0, 2, 3)).tolist()),
                  output_mean=output.mean(dim=(0, 2, 3)).tolist(), gt_mean=gt.mean(dim=(0, 2, 3)).tolist())
    modules = dict(restorer.named_children())
    record['parameters'] = {}
    for name, module in modules.items():
        params = [p for p in module.parameters() if p.requires_grad]
        if not params:
            continue
        grads = {}
        for key, value in (('pixel', pixel), ('extra', extra)):
            grads[key] = torch.cat([(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(
                torch.autograd.grad(value, params, retain_graph=True, allow_unused=True), params)])
        record['parameters'][name] = dict(pixel=grads['pixel'].norm().item(), extra=grads['extra'].norm().item(),
                                          cosine=cosine(grads['pixel'], grads['extra']))
    if draws > 1:
        detached = output.detach().requires_grad_(True)
        samples = [torch.autograd.grad(loss.terms(detached, gt, iteration)['l_extra'], detached)[0]
                   for _ in range(draws)]
        stacked = torch.stack(samples)
        record['draw_coherence'] = (stacked.mean(0).norm() / stacked.flatten(1).norm(dim=1).mean()).item()
    return output, pixel + extra, record


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--task', default='ll', choices=TASKS)
    parser.add_argument('--setting', default='strength_2', choices=list(SETTINGS))
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--iters', type=int, default=1000)
    parser.add_argument('--at', nargs='+', type=int, default=[1, 50, 100, 300, 600, 1000])
    parser.add_argument('--draws', type=int, default=8)
    parser.add_argument('--batch', type=int, default=4)
    parser.add_argument('--patch', type=int, default=None)
    parser.add_argument('--lr', type=float, default=2e-4)
    parser.add_argument('--num_feat', type=int, default=32)
    parser.add_argument('--num_block', type=int, default=4)
    parser.add_argument('--prior', default='default')
    parser.add_argument('--crop_size', type=int, default=32)
    parser.add_argument('--photos', required=True)
    parser.add_argument('--photo_scale', type=float, default=0.5)
    parser.add_argument('--output', required=True, help='the JSON file of the measurements')
    args = parser.parse_args()
    task = Task(args.task, args.patch)
    train_photos, _ = split_photos(load_photos(args.photos, args.photo_scale))
    torch.manual_seed(args.seed)
    restorer = build_restorer(task, args.num_feat, args.num_block)
    loss = StudyLoss(SETTINGS[args.setting], prior=DiffusionPrior(pretrained=args.prior), seed=args.seed,
                     crop_size=args.crop_size)
    if loss.kind is None:
        parser.error(f'--setting {args.setting} has no extra term to measure.')
    calibration = training_batches(train_photos, task, args.batch, args.seed + 1000)
    loss.calibrate([next(calibration) for _ in range(4)], task)
    optimizer = torch.optim.Adam(restorer.parameters(), lr=args.lr, betas=(0.9, 0.99))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, args.iters, eta_min=args.lr / 100)
    batches = training_batches(train_photos, task, args.batch, args.seed)
    records = []
    for iteration in range(1, args.iters + 1):
        lq, gt = next(batches)
        if iteration in args.at:
            _, total, record = measure(restorer, loss, lq, gt, iteration, args.draws)
            records.append(record)
            params = ', '.join(f"{name} |p| {value['pixel']:.2e} |e| {value['extra']:.2e} cos {value['cosine']:+.3f}"
                               for name, value in record['parameters'].items())
            print(f"iter {iteration}: l_pix {record['l_pix']:.4f}; on the image |pixel| "
                  f"{record['output_norm']['pixel']:.3e} |extra| {record['output_norm']['extra']:.3e} cos "
                  f"{record['output_cosine']:+.3f}; draw coherence {record.get('draw_coherence', float('nan')):.3f}; "
                  f"channel means pixel {[f'{v:+.1e}' for v in record['channel_mean']['pixel']]} extra "
                  f"{[f'{v:+.1e}' for v in record['channel_mean']['extra']]}; output mean "
                  f"{[round(v, 3) for v in record['output_mean']]} GT {[round(v, 3) for v in record['gt_mean']]}; "
                  f'{params}', flush=True)
        else:
            total = sum(loss.terms(restorer(lq), gt, iteration).values())
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        scheduler.step()
    os.makedirs(osp.dirname(osp.abspath(args.output)), exist_ok=True)
    with open(args.output, 'w') as file:
        json.dump(dict(args=vars(args), records=records), file, indent=1)


if __name__ == '__main__':
    main()
