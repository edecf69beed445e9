"""DiffLoss's named method settings (presets) and how a preset and the options a user gives combine."""
from ..options import OptionError, choice

# The method options a preset fills in when they are not given. t_range None: the whole schedule; strength: the terms
# whose weights are multiples of the pixel loss's gradient, measured in training; max_conflict: the share of the pixel
# loss's pull on each of the restorer's weights the terms may cancel (losses/conflict_guard.py; False: no guard);
# start_iter: when the term joins ('auto': after a share of the run, losses/application_schedule.py); backoff_margin:
# the rise of the pixel loss after the join that backs the term off (losses/backoff.py; False: never).
# 'default' is the choice of docs/study.md across x4 SR, denoising and low light; 'backprop' the same with the paper's
# gradient through the UNet at 1x; 'paper' the authors' setting (their released code ran both UNet calls under
# torch.no_grad(), so these weights never sent a gradient and nobody tuned them).
METHOD_OPTIONS = ('eps_weight', 'h_weight', 't_range', 'space', 'gradient', 't_weighting', 'strength',
                  'max_conflict', 'start_iter', 'backoff_margin')
PAPER = dict(eps_weight=1e-3, h_weight=1e-6, t_range=None, space='eps', gradient='backprop', t_weighting='uniform',
             strength=None, max_conflict=False, start_iter=0, backoff_margin=False)
DEFAULT = dict(PAPER, eps_weight=None, h_weight=0.0, t_range=(200, 800), gradient='score_difference',
               strength=dict(eps=2.0), max_conflict=0.0, start_iter='auto', backoff_margin=0.1)
PRESETS = {'default': DEFAULT, 'backprop': dict(DEFAULT, gradient='backprop', strength=dict(eps=1.0)),
           'paper': PAPER}
TERMS = ('eps', 'h')


def resolve_method(preset, given):
    """The method options of DiffLoss: ``given`` (option name -> value, None where not given) over ``preset``'s.

    Returns ``(options, sources)``: ``options`` holds every name of ``METHOD_OPTIONS``, ``sources`` says for each
    where it came from (``'given'`` or ``'preset <name>'``). A term's weight is relative (``strength``) or absolute
    (``<term>_weight``), never both: a term named in a given ``strength`` is relative; a term given an absolute weight
    is absolute; any other term keeps the preset's rule (its strength multiple if the preset has one, else its
    absolute weight). So ``strength: {h: 0.25}`` alone keeps the default preset's relative eps term, and
    ``eps_weight: 3.5`` makes the eps term absolute while an h term can still be relative.
    """
    choice('DiffLoss', 'preset', preset, PRESETS)
    defaults = PRESETS[preset]
    options, sources = {}, {}
    for name in METHOD_OPTIONS:
        options[name] = defaults[name] if given.get(name) is None else given[name]
        sources[name] = f'preset {preset}' if given.get(name) is None else 'given'
    given_strength = given.get('strength')
    if given_strength is not None and (not isinstance(given_strength, dict) or set(given_strength) - set(TERMS)):
        return options, sources  # the strength check names the option and the value
    for term in TERMS:
        if given_strength and term in given_strength and given.get(f'{term}_weight') is not None:
            raise OptionError(f"DiffLoss options '{term}_weight' and 'strength.{term}' both set the {term} term's "
                              "weight: keep one (strength: relative to the pixel loss's gradient).")
    strength, strength_sources = {}, {}
    for term in TERMS:
        if given_strength and term in given_strength:
            strength[term], strength_sources[term] = given_strength[term], 'given'
        elif given.get(f'{term}_weight') is None and term in (defaults['strength'] or {}):
            strength[term], strength_sources[term] = defaults['strength'][term], f'preset {preset}'
    options['strength'] = strength or None
    for term in strength:
        options[f'{term}_weight'] = None
        sources[f'{term}_weight'] = f'strength ({strength_sources[term]})'
    sources['strength'] = ', '.join(f'{term}: {source}' for term, source in strength_sources.items()) or sources[
        'strength']
    return options, sources
