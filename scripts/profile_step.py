"""Where one training step of a benchmark configuration spends its time: torch.profiler's top operators.

It builds the same step as scripts/benchmark.py (restorer forward, L1 plus the extra loss, backward, Adam), runs
``--warmup`` steps, then profiles ``--steps`` steps and prints the operators with the most self time (CPU, or CUDA on
a GPU), and the DiffLoss call's share of the step (``record_function`` ranges around the loss).

    python scripts/profile_step.py --variant default --gt-size 64 --batch 4
    python scripts/profile_step.py --loss l1 --gt-size 64 --batch 4
"""
import argparse

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from benchmark import RESTORERS, VARIANTS, Configuration, Environment, build_prior, build_step


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--device', default='cpu', help='cpu or cuda (default: cpu)')
    parser.add_argument('--restorer', choices=sorted(RESTORERS), default='edsr')
    parser.add_argument('--loss', choices=['l1', 'l1+diffloss'], default='l1+diffloss')
    parser.add_argument('--prior', default='default', help='a prior of scripts/benchmark.py (default: default)')
    parser.add_argument('--variant', choices=sorted(VARIANTS), default='default')
    parser.add_argument('--gt-size', type=int, default=64)
    parser.add_argument('--batch', type=int, default=4)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--steps', type=int, default=3)
    parser.add_argument('--rows', type=int, default=15, help='operators listed (default: 15)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    device = torch.device(args.device)
    diffloss = args.loss == 'l1+diffloss'
    env = Environment(device, False, {args.prior: build_prior(args.prior)} if diffloss else {})
    config = Configuration(args.restorer, args.batch, args.gt_size, args.loss, args.prior if diffloss else None,
                           args.variant if diffloss else None)
    step = build_step(config, env)
    for _ in range(args.warmup):
        step()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == 'cuda' else [])
    with profile(activities=activities) as profiler:
        for _ in range(args.steps):
            with record_function('training step'):
                step()
    sort = 'self_cuda_time_total' if device.type == 'cuda' else 'self_cpu_time_total'
    print(f'{config.name}, {args.batch} x {args.gt_size}^2, {args.steps} steps on {device}:')
    print(profiler.key_averages().table(sort_by=sort, row_limit=args.rows))


if __name__ == '__main__':
    main()
