"""How strongly each loss term of an option file pulls on the restorer's output, compared with the pixel loss.

For a few training batches it computes the gradient of each term (``l_pix``, ``l_diff_eps``, ``l_diff_h``, ...)
with respect to the restorer's output and prints the ratio of its norm to the pixel loss gradient's norm, at the
weights in the file. Use it to set ``eps_weight``/``h_weight`` for a new prior: the ratio scales linearly with the
weight. The restorer is the one the file builds (random, or ``path.pretrain_network_g``); ``--bicubic`` judges a
bicubic upscale of the input instead, i.e. an output a restorer reaches early in training.

    python scripts/measure_gradient_scale.py -opt options/train/demo/train_EDSR_x4_demo_diffloss.yml
"""
import argparse
import sys

import torch
import torch.nn.functional as F

import basicsr_diffloss  # noqa: F401  (repairs basicsr and registers everything)
from basicsr.data import build_dataloader, build_dataset
from basicsr.data.data_sampler import EnlargedSampler
from basicsr.models import build_model
from basicsr.utils.options import parse_options
from basicsr_diffloss.losses.gradient_scale import gradient_norms


def term_gradient_norms(model, output):
    """The norm of each logged term's gradient with respect to ``output``."""
    output = output.detach().requires_grad_(True)
    model.cri_pix(output, model.gt)
    return gradient_norms(model.cri_pix.pop_terms(), output)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--batches', type=int, default=8, help='training batches to average over (default: 8)')
    parser.add_argument('--bicubic', action='store_true', help='judge a bicubic upscale of the input')
    args, rest = parser.parse_known_args()
    sys.argv = [sys.argv[0]] + rest
    opt, _ = parse_options('.', is_train=True)
    opt['path'] = {key: value for key, value in opt['path'].items() if key != 'resume_state'}
    opt['dist'] = False
    model = build_model(opt)
    if model.cri_diff is None:
        raise SystemExit('the option file has no train.diffusion_opt')
    dataset_opt = opt['datasets']['train']
    dataset = build_dataset(dataset_opt)
    sampler = EnlargedSampler(dataset, 1, 0, dataset_opt.get('dataset_enlarge_ratio', 1))
    loader = build_dataloader(dataset, dataset_opt, num_gpu=opt['num_gpu'], sampler=sampler, seed=opt['manual_seed'])
    sums, count = {}, 0
    for batch in loader:
        model.feed_data(batch)
        with torch.no_grad():
            output = (F.interpolate(model.lq, size=model.gt.shape[-2:], mode='bicubic', align_corners=False).clamp(0, 1)
                      if args.bicubic else model.net_g(model.lq))
        for name, value in term_gradient_norms(model, output).items():
            sums[name] = sums.get(name, 0.0) + value
        count += 1
        if count == args.batches:
            break
    reference = sums.get('l_pix')
    print(f'gradient norm with respect to the output, mean of {count} batches ({"bicubic" if args.bicubic else "net_g"})')
    for name, total in sums.items():
        ratio = f'{total / reference:8.3f} x l_pix' if reference else ''
        print(f'  {name:12s} {total / count:.3e}  {ratio}')


if __name__ == '__main__':
    main()
