"""Can the conflict guard's two restorer backward passes cost about one? Times, side by side in one run, the
restorer's backward pass for one output gradient, for two output gradients one after the other (what the guard runs:
the pixel loss's and the terms'), and for both in one batched call (``torch.autograd.grad(..., is_grads_batched=True)``,
vmap over the backward graph), on the benchmark's restorers at the benchmark's default-cost shape (GT 64, batch 4).

The guard needs the two gradients on the restorer's weights apart (it compares them weight by weight), so no single
backward pass of their sum can replace the two; the batched call is the one way left to share the work. In the same
sweeps it times whole training steps of L1 + DiffLoss (the benchmark's, ``--prior``), guarded and unguarded: their
difference less one backward pass is what the guard costs beyond its extra pass (its vector arithmetic, handing the
gradient on, and on a CPU the page faults of the memory it allocates afresh). Reported: ms of each (median of
``--repeats`` round-robin sweeps) and the ratios to one pass. glibc's allocator settings (``MALLOC_*`` variables,
named in the table's header when set) change the last.

    python scripts/guard_vjp_cost.py --doc docs/performance.md --section guard-vjp
"""
import argparse
import os
import shlex
import statistics
import sys
import time

import torch

from benchmark import Configuration, Environment, build_prior, build_restorer, build_step, restorer_scale
from doc_sections import cpu_kind, write_doc_section

MODES = ('one', 'two', 'batched')
STEPS = ('default', 'default+no_guard')  # the benchmark's variants: the guarded default, and without the guard


def backward_time(restorer, lq, mode):
    """Seconds of the backward pass(es) of ``mode`` through ``restorer`` at ``lq`` (its forward pass not timed)."""
    parameters = [param for param in restorer.parameters() if param.requires_grad]
    output = restorer(lq)
    gradients = torch.randn(2, *output.shape)
    start = time.perf_counter()
    if mode == 'one':
        torch.autograd.grad(output, parameters, gradients[0], allow_unused=True)
    elif mode == 'two':
        for gradient in gradients:
            torch.autograd.grad(output, parameters, gradient, retain_graph=True, allow_unused=True)
    else:
        torch.autograd.grad(output, parameters, gradients, is_grads_batched=True, allow_unused=True)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--restorers', nargs='+', default=['edsr', 'swinir', 'iat'])
    parser.add_argument('--gt-size', type=int, default=64)
    parser.add_argument('--batch', type=int, default=4)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--prior', default='default', help="the benchmark's prior of the training steps")
    parser.add_argument('--doc', help='a markdown file to write the table into, between section markers')
    parser.add_argument('--section', default='guard-vjp')
    args = parser.parse_args()
    env = Environment(torch.device('cpu'), False, {args.prior: build_prior(args.prior)})
    rows = []
    for name in args.restorers:
        torch.manual_seed(0)
        restorer = build_restorer(name, False, args.gt_size)
        side = args.gt_size // restorer_scale(name)
        lq = torch.rand(args.batch, 3, side, side)
        backward_time(restorer, lq, 'one')  # warm-up
        steps = {variant: build_step(Configuration(name, args.batch, args.gt_size, 'l1+diffloss', args.prior,
                                                   variant), env) for variant in STEPS}
        for step in steps.values():
            for _ in range(3):  # warm-up, the strength measured
                step()
        times = {mode: [] for mode in MODES + STEPS}
        for _ in range(args.repeats):
            for mode in MODES:
                times[mode].append(backward_time(restorer, lq, mode))
            for variant, step in steps.items():
                start = time.perf_counter()
                step()
                times[variant].append(time.perf_counter() - start)
        ms = {mode: 1000 * statistics.median(values) for mode, values in times.items()}
        guard = ms['default'] - ms['default+no_guard']
        rows.append(f"| {name} | {ms['one']:.1f} | {ms['two']:.1f} ({ms['two'] / ms['one']:.2f}x) | "
                    f"{ms['batched']:.1f} ({ms['batched'] / ms['one']:.2f}x) | {ms['default+no_guard']:.1f} | "
                    f"{ms['default']:.1f} ({ms['default'] / ms['default+no_guard']:.2f}x) | {guard:.1f} "
                    f"({guard / ms['one']:.2f}x) |")
        print(rows[-1], flush=True)
    allocator = [f'{name}={value}' for name, value in sorted(os.environ.items())
                 if name.startswith('MALLOC_') or name == 'GLIBC_TUNABLES']  # they change what an allocation costs
    command = ' '.join(allocator + ['python'] + [shlex.quote(arg) for arg in sys.argv])
    table = '\n'.join([
        f'Command: `{command}` ({time.strftime("%Y-%m-%d")}); {cpu_kind()}, {torch.get_num_threads()} threads; '
        f'torch {torch.__version__}; GT {args.gt_size}, batch {args.batch}, median of {args.repeats} sweeps; '
        f'training steps of L1 + DiffLoss on the {args.prior} prior (Adam).', '',
        '| restorer | one backward pass (ms) | two, one after the other (ms, x one) | '
        'two in one batched call (ms, x one) | step without the guard (ms) | guarded step (ms, x unguarded) | '
        'the guard: guarded - unguarded (ms, x one backward pass) |',
        '|---|---|---|---|---|---|---|', *rows])
    if args.doc:
        write_doc_section(args.doc, args.section, table)
    print(table)


if __name__ == '__main__':
    main()
