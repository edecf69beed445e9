"""Write docs/options.md, the option reference of DiffLoss, DiffusionPrior and the datasets, from the code.

Each option's name and default come from the code (the constructor's signature; for a dataset, the keys its code
reads from ``opt`` and the defaults it gives them), its type, meaning and documented default from the class
docstring's option entries (``name (type): meaning. Default: value.``), DiffLoss's presets from ``PRESETS``. An
option the code takes but no docstring documents, one documented but not taken, or a documented default that
contradicts the code's is reported as a problem. The sources are read as text (``ast``) and the presets' module
alone is imported, so it runs in well under a second: nothing imports torch.

    python scripts/generate_options_doc.py                  # rewrite docs/options.md
    python scripts/generate_options_doc.py --check [FILE]   # exit 1 if FILE (docs/options.md) is stale
"""
import argparse
import ast
import difflib
import importlib.util
import re
import sys
import types
from os import path as osp

import yaml

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
PACKAGE = osp.join(REPO, 'basicsr_diffloss')
DOC = osp.join(REPO, 'docs', 'options.md')
COMMAND = 'python scripts/generate_options_doc.py'


class Reference:
    """One documented class: ``source`` (its file in the package), ``where`` (how an option file reaches it),
    ``takes`` (``signature``: the constructor's parameters are the options; ``opt``: the keys read from ``opt``),
    and ``helpers``: ``(file, class)`` of the classes that check and document some of its options."""

    def __init__(self, name, source, registry, where, takes, helpers=()):
        self.name, self.source, self.registry, self.where = name, source, registry, where
        self.takes, self.helpers = takes, helpers


REFERENCES = [
    Reference('DiffLoss', 'losses/diffloss_loss.py', 'LOSS_REGISTRY', '`train.diffusion_opt: {type: DiffLoss, ...}`',
              'signature', helpers=[('losses/application_schedule.py', 'ApplicationSchedule')]),
    Reference('DiffusionPrior', 'priors/diffusion_prior_arch.py', 'ARCH_REGISTRY',
              '`train.diffusion_opt.prior: {type: DiffusionPrior, ...}`', 'signature'),
    Reference('DegradedImageDataset', 'data/degradation_dataset.py', 'DATASET_REGISTRY',
              '`datasets.<phase>: {type: DegradedImageDataset, ...}`', 'opt'),
    Reference('ImageCropDataset', 'data/image_crop_dataset.py', 'DATASET_REGISTRY',
              '`datasets.<phase>: {type: ImageCropDataset, ...}` (a diffusion prior\'s training data)', 'opt'),
]
REQUIRED = object()  # an option without a default in the code
COMPUTED = object()  # a default the code computes (not a literal)
ENTRY = re.compile(r'^    (?P<names>\w+(?: \([^()]*\))?(?:, \w+(?: \([^()]*\))?)*): (?P<text>.*)$')
NAME = re.compile(r'(\w+)(?: \(([^()]*)\))?')
DEFAULT = re.compile(r'\s*(?:Default: (?P<value>.+?)|(?P<required>Required))\.(?=\s|$)')


def class_node(source, name):
    with open(osp.join(PACKAGE, source)) as f:
        tree = ast.parse(f.read())
    return next(node for node in ast.walk(tree) if isinstance(node, ast.ClassDef) and node.name == name)


def literal(node):
    try:
        return ast.literal_eval(node)
    except ValueError:
        return COMPUTED


def signature_options(node):
    """``{name: default}`` of the class's ``__init__`` parameters (``REQUIRED`` where there is none)."""
    init = next(item for item in node.body if isinstance(item, ast.FunctionDef) and item.name == '__init__')
    args = init.args.args[1:]
    defaults = [REQUIRED] * (len(args) - len(init.args.defaults)) + [literal(d) for d in init.args.defaults]
    options = {arg.arg: default for arg, default in zip(args, defaults)}
    options.update({arg.arg: literal(d) if d is not None else REQUIRED
                    for arg, d in zip(init.args.kwonlyargs, init.args.kw_defaults)})
    return options


def opt_reads(node):
    """``{name: default}`` of every ``opt[name]`` / ``opt.get(name[, default])`` in the class (``self.opt`` too):
    the default ``get`` gives, or ``REQUIRED`` for a key the code only indexes."""
    def is_opt(expr):
        return (isinstance(expr, ast.Name) and expr.id == 'opt') or (isinstance(expr, ast.Attribute) and
                                                                     expr.attr == 'opt')

    options = {}
    for expr in ast.walk(node):
        if isinstance(expr, ast.Subscript) and is_opt(expr.value) and isinstance(expr.slice, ast.Constant):
            options.setdefault(expr.slice.value, REQUIRED)
        elif (isinstance(expr, ast.Call) and isinstance(expr.func, ast.Attribute) and expr.func.attr == 'get'
              and is_opt(expr.func.value) and expr.args and isinstance(expr.args[0], ast.Constant)):
            options[expr.args[0].value] = literal(expr.args[1]) if len(expr.args) > 1 else None
    return options


def markdown(text):
    """Docstring text (reST double backticks) as markdown."""
    return re.sub(r'``(.+?)``', r'`\1`', text)


def cell(text):
    return markdown(text).replace('|', '\\|')


def parse_docstring(docstring):
    """``(intro, notes, sections)`` of a cleaned docstring: the free paragraphs above the first option entry and
    those below, and each section of option entries as ``{'header', 'entries': [[names, types, text]], 'note'}``,
    where the header is the paragraph right above the entries and the note a paragraph right below them."""
    intro, notes, sections = [], [], []
    lines = docstring.splitlines() + ['']
    paragraph, section, entry = [], None, None
    for line in lines:
        match = ENTRY.match(line)
        if match:
            if section is None:
                section = dict(header=' '.join(paragraph).rstrip(':'), entries=[], note='')
                sections.append(section)
                paragraph = []
            names = NAME.findall(match['names'])
            entry = [[name for name, _ in names], [kind for _, kind in names], match['text']]
            section['entries'].append(entry)
        elif line.startswith('    ') and entry is not None:
            entry[2] += ' ' + line.strip()
        elif line.strip():
            entry = None
            paragraph.append(line.strip())
        else:
            if paragraph:
                if section is not None and not section['note'] and section['entries']:
                    section['note'] = ' '.join(paragraph)
                else:
                    (notes if sections else intro).append(' '.join(paragraph))
            paragraph, section, entry = [], None, None
    return intro, notes, sections


def split_default(text):
    """``(meaning, documented default or None)``: the entry's ``Default: value.`` sentence taken out."""
    match = DEFAULT.search(text)
    if match is None:
        return text, None
    return (text[:match.start()] + text[match.end():]).strip(), match['value'] or 'required'


def plain(value):
    """``value`` with tuples as lists, as YAML gives it."""
    if isinstance(value, (tuple, list)):
        return [plain(item) for item in value]
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    return value


def yaml_text(value):
    text = yaml.safe_dump(plain(value), default_flow_style=True, width=1000).strip()
    return text[:-len('...')].strip() if text.endswith('...') else text


def documented_value(text):
    """The literal a documented default starts with (``0 (full weight at once)`` -> 0), or COMPUTED for prose."""
    head = text.replace('``', '').split(' (')[0].split('; ')[0].strip()
    try:
        value = yaml.safe_load(head)
    except yaml.YAMLError:
        return COMPUTED
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value if ' ' not in value else COMPUTED
    return value


def default_cell(documented, code):
    if documented is not None:
        return cell(documented)
    if code is REQUIRED:
        return 'required'
    if code is None:
        return 'none'
    return 'set by the code' if code is COMPUTED else f'`{yaml_text(code)}`'


def load_presets():
    """``(METHOD_OPTIONS, PRESETS)`` of losses/method_presets.py, imported without the package's ``__init__`` files
    (they import torch): the module and the package modules it imports, under a private package name."""
    root = '_options_doc_package'
    if root not in sys.modules:
        for name, folder in ((root, PACKAGE), (f'{root}.losses', osp.join(PACKAGE, 'losses'))):
            package = types.ModuleType(name)
            package.__path__ = [folder]
            sys.modules[name] = package
    name = f'{root}.losses.method_presets'
    spec = importlib.util.spec_from_file_location(name, osp.join(PACKAGE, 'losses', 'method_presets.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.METHOD_OPTIONS, module.PRESETS


def presets_table():
    options, presets = load_presets()
    lines = ['### Presets (`preset`)', '',
             'The value each preset gives an option that is not set (from `PRESETS` in '
             '`basicsr_diffloss/losses/method_presets.py`; `null`: a weight not set by the preset, a term weighted '
             'by `strength` instead; for `t_range`, the whole schedule).', '',
             '| option | ' + ' | '.join(f'`{name}`' for name in presets) + ' |',
             '|---|' + '---|' * len(presets)]
    for option in options:
        lines.append(f'| `{option}` | ' + ' | '.join(f'`{yaml_text(preset[option])}`' for preset in presets.values())
                     + ' |')
    return lines


def degradations_table():
    """The degradation types of ``DEGRADATIONS`` in data/degradations.py: their options with the code's defaults,
    and their docstrings."""
    source = 'data/degradations.py'
    with open(osp.join(PACKAGE, source)) as f:
        tree = ast.parse(f.read())
    table = next(node.value for node in tree.body if isinstance(node, ast.Assign) and
                 getattr(node.targets[0], 'id', None) == 'DEGRADATIONS')
    lines = [f'**Degradation types** (`degradations: [{{type: ..., <options>}}, ...]`, `DEGRADATIONS` in '
             f'basicsr_diffloss/{source}; options as `name (default)`):', '',
             '| `type` | options | what it does |', '|---|---|---|']
    for key, value in zip(table.keys, table.values):
        node = class_node(source, value.id)
        options = {name: default for name, default in signature_options(node).items() if name != 'where'}
        listed = ', '.join(f'`{name}`' + (' (required)' if default is REQUIRED else f' (`{yaml_text(default)}`)')
                           for name, default in options.items())
        lines.append(f'| `{key.value}` | {listed} | {cell(" ".join(ast.get_docstring(node).split()))} |')
    return lines


def reference_section(reference):
    """The markdown lines of one class's reference, and its problems."""
    node = class_node(reference.source, reference.name)
    code = signature_options(node) if reference.takes == 'signature' else opt_reads(node)
    intro, notes, sections = parse_docstring(ast.get_docstring(node))
    for source, name in reference.helpers:
        helper_intro, _, helper_sections = parse_docstring(ast.get_docstring(class_node(source, name)))
        for section in helper_sections:
            section['header'] = f"{helper_intro[0].rstrip('.')} (`{name}`, {source})"
        sections += helper_sections
    problems, documented = [], set()
    lines = [f'## {reference.name}', '',
             f'`basicsr_diffloss/{reference.source}`, {reference.registry}; in an option file: {reference.where}.', '']
    for paragraph in intro:
        lines += [markdown(paragraph), '']
    for section in sections:
        if section['header'] and section['header'] != 'Args' and section['header'] != 'Options':
            lines += [f"**{markdown(section['header'])}:**", '']
        lines += ['| option | type | default | meaning |', '|---|---|---|---|']
        for names, kinds, text in section['entries']:
            meaning, documented_default = split_default(text)
            for name, kind in zip(names, kinds):
                if name not in code:
                    problems.append(f'{reference.name}: the docstring documents {name!r}, which the code does not '
                                    'take: remove its entry or rename it.')
                    continue
                documented.add(name)
                if documented_default is not None and code[name] not in (None, REQUIRED, COMPUTED):
                    value = documented_value(documented_default)
                    if value is not COMPUTED and plain(value) != plain(code[name]):
                        problems.append(f'{reference.name} option {name!r}: the docstring says "Default: '
                                        f'{documented_default}", the code\'s default is {code[name]!r}: make them agree.')
                lines.append(f'| `{name}` | {cell(kind)} | {default_cell(documented_default, code[name])} | '
                             f'{cell(meaning)} |')
        lines.append('')
        if section['note']:
            lines += [markdown(section['note']), '']
    missing = [name for name in code if name not in documented]
    if missing:
        problems.append(f'{reference.name}: options {missing} are not documented: add an entry '
                        f'"name (type): meaning. Default: value." to the class docstring of '
                        f'basicsr_diffloss/{reference.source}.')
        lines += ['**Not documented yet:**', '', '| option | default |', '|---|---|']
        lines += [f'| `{name}` | {default_cell(None, code[name])} |' for name in missing]
        lines.append('')
    if reference.name == 'DiffLoss':
        lines += presets_table() + ['']
    if reference.name == 'DegradedImageDataset':
        lines += degradations_table() + ['']
    if notes:
        lines += ['**Notes** (from the docstring):', '']
        lines += [f'- {markdown(paragraph)}' for paragraph in notes]
        lines.append('')
    return lines, problems


def render():
    """``(text of docs/options.md, problems)``."""
    lines = ['# Option reference', '',
             f'<!-- Generated by `{COMMAND}` from the code: edit the docstrings, not this file. -->', '',
             "Generated from the code: each option's name and default from the class's signature (a dataset: the keys "
             "its code reads from `opt` and the defaults it gives them), its type and meaning from the class "
             f"docstring. Regenerate with `{COMMAND}` after changing an option; `tests/test_options_doc.py` fails "
             'while this file is stale. A default in words (a preset\'s, a computed one) is the docstring\'s.', '']
    lines += [f'- [{reference.name}](#{reference.name.lower()}): {reference.where}' for reference in REFERENCES]
    lines.append('')
    problems = []
    for reference in REFERENCES:
        section, found = reference_section(reference)
        lines += section
        problems += found
    return '\n'.join(lines).rstrip() + '\n', problems


def stale_message(path, expected):
    """None if ``path`` holds ``expected``, else a one-line message naming the first line that differs."""
    current = open(path).read() if osp.isfile(path) else ''
    if current == expected:
        return None
    diff = [line for line in difflib.unified_diff(current.splitlines(), expected.splitlines(), 'file', 'code',
                                                   lineterm='', n=0) if line[:1] in '-+' and line[:3] not in '---+++']
    first = diff[0] if diff else '(the end of the file)'
    return (f'{osp.relpath(path, REPO) if path.startswith(REPO) else path} is stale: it differs from the options the '
            f'code documents in {len(diff)} lines (first: {first[:100]!r}); run `{COMMAND}` to rewrite it.')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--check', nargs='?', const=DOC, metavar='FILE',
                        help='compare FILE (default docs/options.md) with the code instead of writing it')
    args = parser.parse_args(argv)
    text, problems = render()
    for problem in problems:
        print(f'problem: {problem}', file=sys.stderr)
    if args.check:
        message = stale_message(args.check, text)
        if message:
            print(message, file=sys.stderr)
        return 1 if message or problems else 0
    with open(DOC, 'w') as f:
        f.write(text)
    print(f'wrote {osp.relpath(DOC, REPO)}' + (f' ({len(problems)} problems above)' if problems else ''))
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main())
