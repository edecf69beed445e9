"""Runs BasicSR's train pipeline (as ``python -m basicsr_diffloss.train`` does) and then saves this rank's initial and
final restorer weights, its DiffLoss seed and strength weights to ``rank<r>.pth``, so that tests can compare ranks and runs."""
import copy
import os

import torch

import basicsr_diffloss  # noqa: F401  (repairs basicsr and registers everything)
import basicsr.train

models, initial_weights = [], []
_build_model = basicsr.train.build_model


def build_and_keep(opt):
    model = _build_model(opt)
    models.append(model)
    initial_weights.append(copy.deepcopy(model.get_bare_model(model.net_g).state_dict()))
    return model


if __name__ == '__main__':
    basicsr.train.build_model = build_and_keep
    basicsr.train.train_pipeline(os.getcwd())
    model = models[0]
    rank = model.opt['rank']
    diffloss = getattr(model, 'cri_diff', None)  # None: the L1 runs build plain SRModel
    strength = diffloss.strength if diffloss is not None else None
    torch.save({'initial': initial_weights[0], 'net_g': model.get_bare_model(model.net_g).state_dict(),
                'diffloss_seed': diffloss.seed if diffloss is not None else None,
                'diffloss_strength_weights': strength.weights if strength is not None else None}, f'rank{rank}.pth')
