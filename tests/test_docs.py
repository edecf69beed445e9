"""The docs restate nothing the code owns wrongly: each rule reads the code (objects or source), not a copy of it.

Docs checked: README.md, docs/*.md, datasets/README.md. Every problem is one line, ``file:line: what is wrong; the
code: what it says``. The rules:

1. Options. A backticked ``name: value`` naming an option of DiffLoss (its schedule included) or DiffusionPrior
   holds a value the option accepts where the code checks it with ``choice``; the keys of ``diffusion_opt`` /
   ``prior`` blocks in YAML code blocks and ``prior: {...}`` spans are options of DiffLoss / DiffusionPrior; a name
   that is no option anywhere but close to one is reported with that one. Markdown tables whose first column is
   ``option`` list options of the class the section names (or of any documented class), and a ``default`` column
   equals the code's default. A clause that says ``default`` beside ``name: value`` states a default: it must be
   the code's (the signature's, else the ``default`` preset's). A clause naming a preset (``preset: P``, the ``P``
   preset) and values (``eps X``, ``h X``, ``strength X``, ``max_conflict: X``, ``gradient: X``) states the preset's
   values: they must be ``PRESETS[P]``'s.
2. Log keys. Every backticked log key (``l_*``, ``*_diff``, ``skipped_steps``) is one the code can write (DiffLoss's
   terms, the guard's ``self.last``, the models' ``log_dict`` / ``loss_dict`` entries, BasicSR's and Real-ESRGAN's
   models' loss dicts). A paragraph (with the list right after it) that presents the log keys (it says "log" and
   names a pixel key and a diffusion term) names every key DiffLoss writes.
3. Commands in shell code blocks: ``python -m basicsr_diffloss.X``, ``torchrun ... -m``, ``python scripts/X.py``
   (after ``cd``), the console scripts of setup.py (``basicsr-diffloss-*``) and ``bash scripts/X.sh`` name files or
   entry points that exist, and every ``--flag`` is one their argparse parser (or BasicSR's ``parse_options``, which
   the train/test pipelines use) accepts.
4. Paths. A repository path a doc names (``options/``, ``scripts/``, ``docs/``, ``basicsr_diffloss/``, ``tests/``,
   ``datasets/``, ``.ci/``; markdown links and their ``#anchors``) exists. A path no repository holds (git-ignored,
   or under ``results/``, ``experiments/``, ``tb_logger/``, or data under ``datasets/``) is an output or the user's
   data: allowed in a code block, in a clause that says what writes, makes or reads it (writes, made, put, unpack,
   load, ...), or where a code block of the same doc writes it; never cited bare as a source of numbers.
5. Quoted messages: a backticked message (six plain words or more, or ``<owner> option '<name>': ...``) or a log
   line in a code block (``INFO:``, ``WARNING:``, ``... error:``) is one the source writes: each part between
   abridgements (``...``, ``<filled in>``) of five words or more matches one string expression of the package (else
   of BasicSR or Real-ESRGAN), a third of its words literally and in order, the others where the code fills in
   values; and ``DiffLoss option 'x'`` / ``DiffusionPrior option 'x'`` names an option of that class.
6. Markdown: no inline code left open (a line starting with '+ ' inside a paragraph starts a list item).
7. README.md is a front door: at most 110 lines, no paragraph over 80 words, no git-ignored or generated path.

docs/options.md is generated from the code (scripts/generate_options_doc.py, tests/test_options_doc.py) and checked
here too. ``python tests/test_docs.py`` prints every problem.
"""
import ast
import difflib
import glob
import importlib.util
import inspect
import os
import re
import shlex
import subprocess
import sys
from functools import lru_cache
from os import path as osp

import pytest
import yaml

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
PACKAGE = osp.join(REPO, 'basicsr_diffloss')
sys.path.insert(0, osp.join(REPO, 'scripts'))

import generate_options_doc as generator  # noqa: E402  (scripts/: option names and defaults from the source)

DOC_FILES = ['README.md', *sorted(osp.relpath(p, REPO) for p in glob.glob(osp.join(REPO, 'docs', '*.md'))),
             'datasets/README.md']


# ----------------------------------------------------------------------------------------------------------------
# Markdown, read with regexes: fenced code blocks, prose paragraphs (a table row or a list item is one), inline code.

class Paragraph:
    def __init__(self, line, text, heading, kind):
        self.line, self.text, self.heading, self.kind = line, text, heading, kind  # kind: prose | table | heading

    def line_of(self, offset):
        return self.line + self.text.count('\n', 0, offset)


class Block:
    def __init__(self, line, lang, lines):
        self.line, self.lang, self.lines = line, lang, lines  # line: the first line inside the fence

    @property
    def text(self):
        return '\n'.join(self.lines)


class Doc:
    def __init__(self, name, text):
        self.name, self.text = name, text
        self.paragraphs, self.blocks = [], []
        lines = text.split('\n')
        heading, current, fence = '', None, None
        for number, line in enumerate(lines, 1):
            if fence is not None:
                if line.strip().startswith(fence[0]):
                    self.blocks.append(Block(fence[1], fence[2], fence[3]))
                    fence = None
                else:
                    fence[3].append(line)
                continue
            match = re.match(r'\s*(```+|~~~+)\s*([\w+-]*)', line)
            if match:
                current = None
                fence = (match[1], number + 1, match[2].lower(), [])
                continue
            stripped = line.strip()
            if not stripped:
                current = None
                continue
            if stripped.startswith('#'):
                heading = stripped.lstrip('#').strip()
                self.paragraphs.append(Paragraph(number, stripped, heading, 'heading'))
                current = None
                continue
            if stripped.startswith('|'):
                self.paragraphs.append(Paragraph(number, stripped, heading, 'table'))
                current = None
                continue
            if current is None or re.match(r'([-*+]|\d+\.)\s', stripped):
                current = Paragraph(number, stripped, heading, 'prose')
                self.paragraphs.append(current)
            else:
                current.text += '\n' + stripped

    def tables(self):
        """Each table as ``(header cells, [(line, cells)], heading)``."""
        tables, rows = [], []
        for paragraph in self.paragraphs + [Paragraph(0, '', '', 'end')]:
            if paragraph.kind == 'table' and (not rows or paragraph.line == rows[-1][0] + 1):
                rows.append((paragraph.line, split_row(paragraph.text), paragraph.heading))
                continue
            if len(rows) >= 2:
                tables.append((rows[0][1], [(line, cells) for line, cells, _ in rows[2:]], rows[0][2]))
            rows = [(paragraph.line, split_row(paragraph.text), paragraph.heading)] if paragraph.kind == 'table' else []
        return tables


def split_row(text):
    masked = mask_code(text).replace('\\|', '\0\0')
    cells, start = [], 0
    for index, char in enumerate(masked):
        if char == '|':
            cells.append(text[start:index].strip())
            start = index + 1
    cells.append(text[start:].strip())
    return cells[1:-1] if text.strip().endswith('|') else cells[1:]


INLINE = re.compile(r'(`+)(.+?)\1', re.S)


def mask_code(text):
    """``text`` with the inside of inline code replaced by spaces (same length), so that prose rules skip it."""
    return INLINE.sub(lambda m: m[1] + ' ' * len(m[2]) + m[1], text)


def spans(paragraph):
    """``(offset, code)`` of each inline code span."""
    return [(m.start(2), ' '.join(m[2].split())) for m in INLINE.finditer(paragraph.text)]


def clauses(paragraph):
    """``(offset, text)`` of each clause: the paragraph cut at '; ' and at sentence ends outside inline code."""
    masked = mask_code(paragraph.text)
    cuts = [0] + [m.end() for m in re.finditer(r'(?:;|[.?!]\)?)\s+(?=[A-Z`(*\[])|;\s', masked)] + [len(masked)]
    return [(start, paragraph.text[start:end]) for start, end in zip(cuts, cuts[1:]) if paragraph.text[start:end]]


@lru_cache(maxsize=None)
def load_doc(name):
    with open(osp.join(REPO, name), encoding='utf-8') as f:
        return Doc(name, f.read())


def docs():
    return [load_doc(name) for name in DOC_FILES]


# ----------------------------------------------------------------------------------------------------------------
# What the code says.

@lru_cache(maxsize=None)
def code():
    """Options (with their defaults and accepted values), presets, log keys, console scripts and every name the code
    reads as an option, from the code."""
    from basicsr_diffloss.data import degradations
    from basicsr_diffloss.losses import diffloss_loss, method_presets
    from basicsr_diffloss.losses.application_schedule import ApplicationSchedule
    from basicsr_diffloss.losses.diffloss_loss import DiffLoss
    from basicsr_diffloss.priors import diffusion_prior_arch
    from basicsr_diffloss.priors.diffusion_prior_arch import DiffusionPrior

    def signature(klass):
        return {name: (None if p.default is inspect.Parameter.empty else p.default)
                for name, p in inspect.signature(klass.__init__).parameters.items()
                if name != 'self' and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}

    owners = {'DiffLoss': {**signature(DiffLoss), **signature(ApplicationSchedule)},
              'DiffusionPrior': signature(DiffusionPrior)}
    for name, klass in degradations.DEGRADATIONS.items():
        owners[name] = {key: value for key, value in signature(klass).items() if key != 'where'}
    for reference in generator.REFERENCES:
        if reference.takes == 'opt':
            node = generator.class_node(reference.source, reference.name)
            owners[reference.name] = {key: (None if value in (generator.REQUIRED, generator.COMPUTED) else value)
                                      for key, value in generator.opt_reads(node).items()}
    presets = method_presets.PRESETS
    defaults = dict(owners['DiffLoss'])
    defaults.update({name: value for name, value in presets['default'].items()})
    choices = {'DiffLoss': choice_options(diffloss_loss), 'DiffusionPrior': choice_options(diffusion_prior_arch)}
    choices['DiffLoss']['preset'] = list(presets)
    return dict(owners=owners, presets=presets, defaults=defaults, choices=choices, log_keys=log_keys(),
                required_log_keys=diffloss_log_keys(), commands=console_scripts(),
                known_names=known_names())


def choice_options(module):
    """``{option: accepted values}`` of every ``choice('<Owner>', '<option>', value, CHOICES)`` in ``module``."""
    found = {}
    for node in ast.walk(ast.parse(inspect.getsource(module))):
        if (isinstance(node, ast.Call) and getattr(node.func, 'id', None) == 'choice' and len(node.args) >= 4
                and isinstance(node.args[1], ast.Constant)):
            try:
                found[node.args[1].value] = list(eval(compile(ast.Expression(node.args[3]), '<choices>', 'eval'),
                                                      vars(module)))
            except Exception:  # a computed list the module's globals cannot give: not checked
                pass
    return found


def package_sources():
    return sorted(glob.glob(osp.join(PACKAGE, '**', '*.py'), recursive=True))


def site_package(name):
    spec = importlib.util.find_spec(name)
    return list(spec.submodule_search_locations)[0] if spec and spec.submodule_search_locations else None


def library_sources():
    files = []
    for name in ('basicsr', 'realesrgan'):
        root = site_package(name)
        if root:
            files += sorted(glob.glob(osp.join(root, '**', '*.py'), recursive=True))
    return files


@lru_cache(maxsize=None)
def parsed(path):
    with open(path, encoding='utf-8') as f:
        return ast.parse(f.read())


def assigned_keywords(tree, target):
    """Keys of every ``<...>.<target> = dict(k=...)`` / ``OrderedDict(k=...)`` in ``tree``."""
    keys = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) and any(
                getattr(t, 'attr', getattr(t, 'id', None)) == target for t in node.targets):
            if getattr(node.value.func, 'id', None) in ('dict', 'OrderedDict'):
                keys |= {keyword.arg for keyword in node.value.keywords if keyword.arg}
    return keys


def diffloss_log_keys():
    """The keys DiffLoss adds to a model's log: its terms (``l_diff_<space>`` for every space, ``l_diff_h``) and the
    values of ``self.last`` in losses/ (the conflict guard's)."""
    from basicsr_diffloss.losses.diffloss_loss import SPACES
    keys = set()
    for path in glob.glob(osp.join(PACKAGE, 'losses', '*.py')):
        tree = parsed(path)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and re.fullmatch(r'l_diff_\w+',
                                                                                               node.value):
                keys.add(node.value)
            if isinstance(node, ast.JoinedStr) and ast.unparse(node) == "f'l_diff_{self.space}'":
                keys |= {f'l_diff_{space}' for space in SPACES}
        keys |= assigned_keywords(tree, 'last')
    assert {'l_diff_eps', 'l_diff_h'} <= keys, 'the log keys of DiffLoss are no longer found this way: update the test'
    return keys


def log_keys():
    """Every key the code can write into a training log: DiffLoss's, the package's models' ``log_dict``, and the
    ``loss_dict[...]`` / ``log_dict[...]`` entries of its, BasicSR's and Real-ESRGAN's models."""
    keys = set(diffloss_log_keys())
    entry = re.compile(r"""(?:loss_dict|log_dict)\[['"](\w+)['"]\]""")
    for path in package_sources() + [p for p in library_sources() if '/models/' in p]:
        with open(path, encoding='utf-8') as f:
            keys |= set(entry.findall(f.read()))
        if path.startswith(PACKAGE):
            keys |= assigned_keywords(parsed(path), 'log_dict')
    return keys


def known_names():
    """Every identifier the code reads as an option key or takes as a keyword (this package, BasicSR, Real-ESRGAN):
    a name outside this set is no option at all."""
    names = set()
    read = re.compile(r"""(?:\[|\.get\(|\.pop\(|\.setdefault\()\s*['"](\w+)['"]""")
    for path in package_sources() + library_sources():
        with open(path, encoding='utf-8') as f:
            names |= set(read.findall(f.read()))
        for node in ast.walk(parsed(path)):
            if isinstance(node, ast.arg):
                names.add(node.arg)
            elif isinstance(node, ast.keyword) and node.arg:
                names.add(node.arg)
    return names


def console_scripts():
    """``{console script: module file}`` from setup.py's ``COMMANDS`` (train and test run their ``-m`` module)."""
    tree = parsed(osp.join(REPO, 'setup.py'))
    table = next(node.value for node in tree.body if isinstance(node, ast.Assign)
                 and getattr(node.targets[0], 'id', None) == 'COMMANDS')
    scripts = {}
    for name, target in ast.literal_eval(table).items():
        module, function = target.split(':')
        path = osp.join(PACKAGE, 'commands', f'{module}.py')
        runs = [node.args[0].value for node in ast.walk(parsed(path)) if isinstance(node, ast.FunctionDef)
                and node.name == function for node in ast.walk(node)
                if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
                and str(node.args[0].value).startswith('basicsr_diffloss.')]
        scripts[name] = module_file(runs[0]) if runs else path
    return scripts


def module_file(module):
    base = osp.join(REPO, *module.split('.'))
    for candidate in (base + '.py', osp.join(base, '__main__.py')):
        if osp.isfile(candidate):
            return candidate
    return None


@lru_cache(maxsize=None)
def basicsr_flags():
    path = osp.join(site_package('basicsr'), 'utils', 'options.py')
    return parser_flags_of_tree(parsed(path), path)


@lru_cache(maxsize=None)
def flags_of(path):
    """The flags ``path``'s command line accepts: its ``add_argument`` flags, BasicSR's where it runs
    ``parse_options`` or BasicSR's pipelines, and those of the command module it runs."""
    tree = parsed(path)
    flags = parser_flags_of_tree(tree, path)
    source = ast.unparse(tree)
    if re.search(r'\bparse_options\(|\b(train|test)_pipeline\(', source):
        flags |= basicsr_flags()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith('basicsr_diffloss.commands.'):
            flags |= flags_of(module_file(node.module))
    return frozenset(flags | {'-h', '--help'})


def parser_flags_of_tree(tree, path):
    flags = set()
    module = None
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and getattr(node.func, 'attr', None) == 'add_argument'):
            continue
        for arg in node.args:
            if isinstance(arg, ast.Constant) and str(arg.value).startswith('-'):
                flags.add(arg.value)
            elif isinstance(arg, ast.JoinedStr):  # f'--{name}' in a loop over a table: the table's names
                loops = [loop for loop in ast.walk(tree) if isinstance(loop, ast.For) and node in ast.walk(loop)]
                if loops:
                    module = module or importlib.import_module(module_name(path))
                    iterable = ast.unparse(loops[-1].iter)
                    for item in eval(iterable, vars(module)):
                        name = item[0] if isinstance(item, tuple) else item
                        flags.add(ast.unparse(arg)[2:-1].replace('{' + ast.unparse(loops[-1].target).split(',')[0]
                                                                 .strip('() ') + '}', str(name)))
    return flags


def module_name(path):
    relative = osp.relpath(path, REPO)[:-len('.py')]
    return relative.replace(os.sep, '.')


HOLE = None  # a part of a message the code fills in
HOLE_WORDS = 5  # the most words a value filled into a message may have (its start and end may hold any)
MAX_VARIANTS = 16


def templates_of(node, strings):
    """The word lists a string expression can give, ``HOLE`` for each part the code computes: an f-string's fields
    (a field that is a conditional of strings, or a local name bound to strings, gives each of them), ``+`` of
    strings; None where ``node`` is no string expression. ``strings``: the function's local names -> their node."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [words(node.value)]
    if isinstance(node, ast.IfExp):
        body, orelse = templates_of(node.body, strings), templates_of(node.orelse, strings)
        return (body or [[HOLE]]) + (orelse or [[HOLE]]) if body or orelse else None
    if isinstance(node, ast.JoinedStr):
        variants = [[]]
        for index, part in enumerate(node.values):
            if isinstance(part, ast.Constant):
                # a word glued to a field ('{w}x{h}', '{n}px') is part of the value the code fills in
                text = part.value
                if index > 0 and re.match(r'\w', text):
                    text = re.sub(r'^\w+', '', text)
                if index + 1 < len(node.values) and re.search(r'\w$', text):
                    text = re.sub(r'\w+$', '', text)
                options = [words(text)]
            else:
                value = part.value
                if isinstance(value, ast.Name) and value.id in strings:
                    value = strings[value.id]
                options = templates_of(value, {}) if isinstance(value, (ast.IfExp, ast.Constant, ast.JoinedStr)) \
                    else None
                options = options or [[HOLE]]
            variants = [v + o for v in variants for o in options][:MAX_VARIANTS]
        return [[part for i, part in enumerate(v) if not (part is HOLE and i and v[i - 1] is HOLE)] for v in variants]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = templates_of(node.left, strings), templates_of(node.right, strings)
        if left is None and right is None:
            return None
        return [a + b for a in (left or [[HOLE]]) for b in (right or [[HOLE]])][:MAX_VARIANTS]
    return None


def words(text):
    return re.findall(r'\w+', text)


def local_strings(function):
    return {target.id: node.value for node in ast.walk(function) if isinstance(node, ast.Assign)
            for target in node.targets if isinstance(target, ast.Name)}


@lru_cache(maxsize=None)
def source_templates(library=False):
    """``(words, set of literal words)`` of every string expression of the package's source (or BasicSR's and
    Real-ESRGAN's): messages as the code writes them, with holes where it fills in values."""
    found = {}
    for path in library_sources() if library else package_sources():
        tree = parsed(path)
        scopes = [(tree, {})] + [(f, local_strings(f)) for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)]
        for scope, strings in scopes:
            for node in ast.walk(scope):
                if isinstance(node, (ast.Constant, ast.JoinedStr, ast.BinOp)):
                    for parts in templates_of(node, strings) or []:
                        literal = frozenset(part for part in parts if part is not HOLE)
                        if len(literal) >= 2:
                            found[tuple(parts)] = literal
    return list(found.items())


def best_alignment(fragment, parts):
    """The most words of ``fragment`` that ``parts`` (a template) matches literally, in order, its holes standing
    for up to HOLE_WORDS words each, and any words before and after it (the caller's prefix, a nested error)."""
    n, m = len(fragment), len(parts)
    impossible = -10 ** 6

    @lru_cache(maxsize=None)
    def best(f, t, absorbed):
        if f == n:
            return 0
        if t == m:
            return 0  # the rest follows the template: another message appended to it
        if parts[t] is HOLE:
            take = best(f + 1, t, absorbed + 1) if absorbed < HOLE_WORDS or t == m - 1 else impossible
            return max(take, best(f, t + 1, 0))
        return 1 + best(f + 1, t + 1, 0) if parts[t] == fragment[f] else impossible

    return max((best(f, t, 0) for f in range(n) for t in range(m) if parts[t] is not HOLE
                and parts[t] == fragment[f]), default=impossible)


def found_in_source(fragment_words):
    """Whether a source template holds these words: a third of them (at least two) literally and in order, the
    others filled into its holes or around it."""
    need = max(2, -(-len(fragment_words) // 3))
    key = tuple(fragment_words)
    for library in (False, True):
        for parts, literal in source_templates(library):
            if sum(word in literal for word in key) >= need and best_alignment(key, parts) >= need:
                return True
    return False


# ----------------------------------------------------------------------------------------------------------------
# Rule 1: options, defaults, preset values.

NAME_VALUE = re.compile(r'^([a-z_][a-z0-9_]*): (.+)$')
PRESET_MENTION = re.compile(r'`preset: (\w+)`|`(\w+)` preset|preset `(\w+)`')


def yaml_value(text):
    try:
        return generator.plain(yaml.safe_load(text))
    except yaml.YAMLError:
        return text


def same(a, b):
    a, b = generator.plain(a), generator.plain(b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(
            b, bool):
        return float(a) == float(b)
    return a == b


def check_option(owner, name, value, where, problems, check_value=True):
    """``name: value`` of ``owner`` (DiffLoss or DiffusionPrior)."""
    facts = code()
    if name not in facts['owners'][owner]:
        problems.append(f'{where}: `{name}` is not an option of {owner}; the code: {owner} takes '
                        f'{sorted(facts["owners"][owner])}')
        return
    accepted = facts['choices'][owner].get(name)
    placeholder = re.search(r'[<>.]|\bX\b|^[a-z]$', str(value))  # `dtype: <x>`, `every: k`
    if (check_value and accepted is not None and value is not None and not isinstance(value, (dict, list))
            and value not in accepted and str(value) not in map(str, accepted) and not placeholder):
        problems.append(f'{where}: `{name}: {value}` is not a value {owner} accepts; the code: one of {accepted}')


def option_problems(doc):
    facts = code()
    owners = facts['owners']
    problems = []
    difflosss, priors = set(owners['DiffLoss']), set(owners['DiffusionPrior'])
    for paragraph in doc.paragraphs:
        for offset, span in spans(paragraph):
            where = f'{doc.name}:{paragraph.line_of(offset)}'
            match = NAME_VALUE.match(span)
            if not match:
                continue
            name, value = match[1], match[2]
            if name == 'prior' and value.startswith('{'):
                parsed_value = yaml_value(value.replace('...', ''))
                if isinstance(parsed_value, dict):
                    for key, item in parsed_value.items():
                        if key != 'type' and key is not None:
                            check_option('DiffusionPrior', key, item, where, problems)
                continue
            if name in difflosss or name in priors:
                owner = 'DiffLoss' if name in difflosss else 'DiffusionPrior'
                before = mask_code(paragraph.text[:offset])
                denied = re.search(r'\bno\b[^.;]*$', before)  # "so no `preset: dehaze`": a value said not to exist
                check_option(owner, name, yaml_value(value) if not re.search(r'[<>]', value) else value, where,
                             problems, check_value=not denied)
            elif name not in facts['known_names']:
                close = difflib.get_close_matches(name, sorted(difflosss | priors), n=1, cutoff=0.75)
                if close:
                    problems.append(f'{where}: `{name}` is not an option the code reads; the code: did you mean '
                                    f'`{close[0]}`?')
    for block in doc.blocks:
        if block.lang not in ('yaml', 'yml'):
            continue
        try:
            data = yaml.safe_load(block.text)
        except yaml.YAMLError as error:
            problems.append(f'{doc.name}:{block.line}: the YAML block does not parse: {error}')
            continue
        for key_path, mapping in yaml_mappings(data):
            owner = ('DiffLoss' if key_path[-1:] == ('diffusion_opt',) else
                     'DiffusionPrior' if key_path[-1:] == ('prior',) else None)
            if owner is None:
                continue
            for key, value in mapping.items():
                if key in ('type',) or (owner == 'DiffLoss' and key == 'prior'):
                    continue
                check_option(owner, key, value, f'{doc.name}:{block.line + yaml_line(block, key)}', problems)
    problems += table_problems(doc)
    return problems


def yaml_mappings(data, key_path=()):
    if isinstance(data, dict):
        yield key_path, data
        for key, value in data.items():
            yield from yaml_mappings(value, key_path + (key,))


def yaml_line(block, key):
    return next((index for index, line in enumerate(block.lines) if re.match(rf'\s*{re.escape(str(key))}:', line)),
                0)


def table_problems(doc):
    """Tables whose first column is ``option``: names of the section's class (or any), defaults the code's."""
    owners = code()['owners']
    problems = []
    for header, rows, heading in doc.tables():
        if not header or header[0].strip('` ').lower() != 'option':
            continue
        named = [owner for owner in owners if f'`{owner}`' in heading or re.search(rf'\b{owner}\b', heading)]
        default_column = next((i for i, cell in enumerate(header) if cell.strip().lower() == 'default'), None)
        for line, cells in rows:
            names = re.findall(r'`([a-z_][a-z0-9_]*)(?::[^`]*)?`', cells[0]) if cells else []
            for name in names[:1]:
                candidates = [owner for owner in (named or owners) if name in owners[owner]]
                if name == 'prior' or not candidates and name in ('dtype', 'channels_last'):
                    continue
                if not candidates:
                    problems.append(f'{doc.name}:{line}: `{name}` in an option table is not an option of '
                                    f'{named or "DiffLoss, DiffusionPrior or a dataset"}; the code: no such option')
                    continue
                if default_column is None or default_column >= len(cells):
                    continue
                stated = re.fullmatch(r'`([^`]*)`', cells[default_column].strip())
                if stated is None:
                    continue
                value = yaml_value(stated[1])
                if all(owners[owner][name] is None for owner in candidates):
                    continue  # computed by the code (a preset's, the scheduler config's): generated text says how
                if not any(same(value, owners[owner][name]) for owner in candidates):
                    problems.append(f'{doc.name}:{line}: the table gives `{name}` the default `{stated[1]}`; the '
                                    f'code: {" / ".join(repr(owners[owner][name]) for owner in candidates)} '
                                    f'({", ".join(candidates)})')
    return problems


def preset_value(preset, term):
    strength = preset.get('strength') or {}
    return strength[term] if term in strength else preset.get(f'{term}_weight')


VALUE = r'(-?\d[\d.]*(?:e-?\d+)?)'
DATE = r'\d{4}-\d\d-\d\d'


def default_and_preset_problems(doc):
    facts = code()
    problems = []
    for paragraph in doc.paragraphs:
        for start, clause in clauses(paragraph):
            masked = mask_code(clause)
            where = f'{doc.name}:{paragraph.line_of(start)}'
            mentions = [(m.start(), next(g for g in m.groups() if g)) for m in PRESET_MENTION.finditer(clause)]
            mentions = [(position, name) for position, name in mentions if name in facts['presets']]
            history = re.search(DATE, paragraph.heading) or re.search(
                r'\b(former|earlier|until|before|old|was|were|then)\b|' + DATE, masked)
            if mentions:
                problems += preset_clause_problems(clause, mentions, where)
            elif not history:
                for m in INLINE.finditer(clause):
                    span, match = ' '.join(m[2].split()), NAME_VALUE.match(' '.join(m[2].split()))
                    stated_as_default = (re.search(r'\bdefaults?(?: is| to|:|,)?\s*\(?\W{0,2}$', masked[:m.start(1)])
                                         or re.match(r'\W{0,3}\(?(?:the |package |its )?default\b',
                                                     masked[m.end():]))
                    if (stated_as_default and match and match[1] in facts['defaults']
                            and not re.search(r'[<>]|\.\.\.', match[2])):
                        stated, default = yaml_value(match[2]), facts['defaults'][match[1]]
                        if default is not None and not same(stated, default):
                            problems.append(f'{where}: states the default `{span}`; the code\'s default is '
                                            f'`{match[1]}: {generator.yaml_text(default)}`')
    return problems


def preset_clause_problems(clause, mentions, where):
    presets = code()['presets']
    problems = []
    checks = [(r'\beps(?:_weight)?:? ' + VALUE, lambda p: preset_value(p, 'eps'), 'eps'),
              (r'\bh(?:_weight)?:? ' + VALUE, lambda p: preset_value(p, 'h'), 'h'),
              (r'\bstrength:? \{?(?:eps: )?' + VALUE, lambda p: preset_value(p, 'eps'), 'strength (eps)'),
              (r'`max_conflict: ([^`]+)`', lambda p: p['max_conflict'], 'max_conflict'),
              (r'`gradient: (\w+)`', lambda p: p['gradient'], 'gradient'),
              (r'`space: (\w+)`', lambda p: p['space'], 'space')]
    for pattern, get, label in checks:
        for match in re.finditer(pattern, clause):
            owner = [name for position, name in mentions if position <= match.start()]
            if not owner:
                continue
            preset = presets[owner[-1]]
            stated, value = match[1], get(preset)
            stated = float(stated) if re.fullmatch(VALUE, stated) else yaml_value(stated)
            if value is None or not same(stated, value):
                problems.append(f'{where}: says the `{owner[-1]}` preset has {label} {match[1]}; the code '
                                f'(PRESETS[{owner[-1]!r}]): {label} {generator.yaml_text(value)}')
    return problems


# ----------------------------------------------------------------------------------------------------------------
# Rule 2: log keys.

LOG_KEY = re.compile(r'`(l_[a-z0-9_]+|[a-z0-9]+_diff|skipped_steps)`')
PIXEL_KEYS = ('l_pix', 'l_g_pix')


def units(doc):
    """Prose paragraphs, a paragraph and the list that follows it taken as one (a list of what is logged)."""
    merged = []
    for paragraph in doc.paragraphs:
        previous = merged[-1] if merged else None
        if (previous is not None and paragraph.kind == 'prose' and previous.kind == 'prose'
                and re.match(r'[-*+]\s', paragraph.text)
                and paragraph.line == previous.line + previous.text.count('\n') + 1):
            merged[-1] = Paragraph(previous.line, previous.text + '\n' + paragraph.text, previous.heading, 'prose')
        else:
            merged.append(paragraph)
    return merged


def log_key_problems(doc):
    facts = code()
    problems = []
    for paragraph in units(doc):
        named = {m[1]: paragraph.line_of(m.start()) for m in LOG_KEY.finditer(paragraph.text)}
        for key, line in named.items():
            if key not in facts['log_keys']:
                close = difflib.get_close_matches(key, sorted(facts['log_keys']), n=1)
                problems.append(f'{doc.name}:{line}: `{key}` is not a key the code logs; the code writes '
                                f'{sorted(facts["required_log_keys"])} (DiffLoss), the models\' own keys'
                                + (f'; nearest: `{close[0]}`' if close else ''))
        presents = (re.search(r'\blog', mask_code(paragraph.text), re.I) and any(k in named for k in PIXEL_KEYS)
                    and any(k.startswith('l_diff_') for k in named))
        if presents:
            missing = sorted(facts['required_log_keys'] - set(named))
            if missing:
                problems.append(f'{doc.name}:{paragraph.line}: lists the log keys without {missing}; the code writes '
                                f'{sorted(facts["required_log_keys"])} besides the pixel term')
    return problems


# ----------------------------------------------------------------------------------------------------------------
# Rule 3: commands and their flags.

SHELL_LANGS = ('', 'bash', 'sh', 'shell', 'console')
SEPARATORS = ('&&', '||', ';', '|', '&', 'do', 'then', 'else', 'done', 'fi', 'wait')


def shell_commands(block):
    """``(line, cwd, tokens)`` of each simple command of a shell block: continuations joined, heredocs skipped,
    ``NAME=value`` lines expanded into later lines, ``cd`` followed."""
    variables, cwd, commands = {}, '.', []
    lines, index = block.lines, 0
    while index < len(lines):
        number, text = block.line + index, lines[index]
        while text.rstrip().endswith('\\') and index + 1 < len(lines):
            index += 1
            text = text.rstrip()[:-1] + ' ' + lines[index]
        index += 1
        heredoc = re.search(r"<<-?\s*'?(\w+)'?", text)
        if heredoc:
            while index < len(lines) and lines[index].strip() != heredoc[1]:
                index += 1
            index += 1
        for name, value in variables.items():
            text = re.sub(rf'\$\{{?{name}\}}?\b', value, text)
        try:
            tokens = shlex.split(text, comments=True)
        except ValueError:
            continue
        command = []
        for token in tokens + [';']:
            if token not in SEPARATORS:
                command.append(token)
                continue
            assignments = []
            while command and re.fullmatch(r'[A-Za-z_]\w*=.*', command[0]):
                assignments.append(command.pop(0).split('=', 1))
            if not command:
                variables.update(assignments)
            if command[:1] == ['cd'] and len(command) > 1:
                cwd = osp.normpath(osp.join(cwd, command[1])) if command[1] not in ('-', '~') else '.'
            elif command:
                commands.append((number, cwd, command))
            command = []
    return commands


def command_problems(doc):
    scripts = code()['commands']
    problems = []
    for block in doc.blocks:
        if block.lang not in SHELL_LANGS:
            continue
        for line, cwd, tokens in shell_commands(block):
            where = f'{doc.name}:{line}'
            while tokens and tokens[0] in ('/usr/bin/time', 'time', '-v', 'nohup', 'timeout', 'exec') or (
                    tokens and re.fullmatch(r'\d+[smh]?', tokens[0])):
                tokens = tokens[1:]
            if not tokens:
                continue
            program, rest, target, label = osp.basename(tokens[0]), tokens[1:], None, None
            if program in ('torchrun', 'srun'):
                if '-m' in rest and program == 'torchrun':
                    module = rest[rest.index('-m') + 1]
                    program, rest = 'python', ['-m', module] + rest[rest.index('-m') + 2:]
                else:
                    pythons = [i for i, t in enumerate(rest) if re.fullmatch(r'python3?', osp.basename(t))]
                    if not pythons:
                        continue
                    program, rest = 'python', rest[pythons[0] + 1:]
            if re.fullmatch(r'python3?(\.\d+)?', program):
                if rest[:1] == ['-m'] and len(rest) > 1:
                    module, rest = rest[1], rest[2:]
                    if not module.startswith('basicsr_diffloss'):
                        continue
                    target, label = module_file(module), f'python -m {module}'
                    if target is None:
                        problems.append(f'{where}: `python -m {module}`: no such module in the repository')
                        continue
                elif rest and not rest[0].startswith('-'):
                    script, rest = rest[0], rest[1:]
                    if osp.isabs(script) or not script.endswith('.py'):
                        continue
                    target, label = osp.normpath(osp.join(REPO, cwd, script)), f'python {script}'
                    if not osp.isfile(target):
                        problems.append(f'{where}: `{label}`: {osp.relpath(target, REPO)} does not exist')
                        continue
                else:
                    continue
            elif program.startswith('basicsr-diffloss-'):
                if program not in scripts:
                    problems.append(f'{where}: `{program}` is not a console script of setup.py; the code: '
                                    f'{sorted(scripts)}')
                    continue
                target, label = scripts[program], program
            elif program in ('bash', 'sh') and rest and rest[0].endswith('.sh'):
                if not osp.isfile(osp.join(REPO, cwd, rest[0])):
                    problems.append(f'{where}: `{program} {rest[0]}`: the script does not exist')
                continue
            else:
                continue
            accepted = flags_of(target)
            for token in rest:
                flag = re.match(r'^\[?(--?[A-Za-z][\w-]*)', token)
                if flag and flag[1] not in accepted:
                    problems.append(f'{where}: `{label}` has no flag `{flag[1]}`; the code '
                                    f'({osp.relpath(target, REPO)}) accepts {sorted(accepted - {"-h"})}')
    return problems


# ----------------------------------------------------------------------------------------------------------------
# Rule 4: paths and links.

ROOTS = ('options', 'scripts', 'docs', 'basicsr_diffloss', 'tests', 'datasets', 'results', 'experiments',
         'tb_logger', '.ci')
OUTPUT_ROOTS = ('results', 'experiments', 'tb_logger')
PATH = re.compile(r'(?<![\w./~$<>{-])((?:' + '|'.join(re.escape(r) for r in ROOTS) + r')/[^\s`\'"(),;|\]#]*)')
OUTPUT_FLAG = re.compile(r'(?:--?[\w-]*(?:out|plot|save|dir|dest)[\w-]*[ =]|>\s*)$')
WRITES = re.compile(r'\b(writ(e|es|ten|ing)|wrote|makes?|made|creat(e|es|ed|ing)|sav(e|es|ed)|puts?|plac(e|es|ed)|'
                    r'cop(y|ies|ied)|mov(e|es|ed)|unpack(s|ed)?|download(s|ed)?|trains? into|goes|go (under|to|into)|'
                    r'lands?|built|builds?|prepar(e|es|ed)|fetch(es|ed)?|loads?|loaded|reads?|looked for|points?|'
                    r'stor(e|es|ed)|cuts?|pack(s|ed)?|extract(s|ed)?|lays?|laid)\b', re.I)


@lru_cache(maxsize=None)
def ignored_paths():
    """The git-ignored files and folders of the working tree (``.gitignore``), as git lists them."""
    try:
        result = subprocess.run(['git', 'ls-files', '--others', '--ignored', '--exclude-standard', '--directory'],
                                cwd=REPO, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return ()
    return tuple(line.rstrip('/') for line in result.stdout.splitlines() if line)


def ignored(path):
    path = path.rstrip('/')
    return any(path == p or path.startswith(p + '/') for p in ignored_paths())


def expand_braces(path):
    match = re.search(r'\{([^{}]*,[^{}]*)\}', path)
    if not match:
        return [path]
    return [p for part in match[1].split(',') for p in expand_braces(path[:match.start()] + part + path[match.end():])]


def clean_path(path):
    path = path.rstrip('.:,*')
    return path


def in_repository(path):
    """Whether ``path`` (no placeholders) is in the repository: it exists and is not git-ignored; for
    ``tests/x.py::test_name``, the test too."""
    if '::' in path:
        path, _, test = path.partition('::')
        full = osp.join(REPO, path)
        return osp.isfile(full) and re.search(rf'\bdef {re.escape(test.split("[")[0])}\b', open(full).read())
    full = osp.join(REPO, path)
    if any(ch in path for ch in '*?['):
        return any(not ignored(osp.relpath(p, REPO)) for p in glob.glob(full))
    return osp.exists(full) and not ignored(path.rstrip('/'))


def literal_prefix(path):
    """The part of ``path`` before its first placeholder (``<x>``, ``...``, ``X.yml``-style names)."""
    match = re.search(r'<|\.\.\.|\{|\$', path)
    prefix = path[:match.start()] if match else path
    return prefix[:prefix.rfind('/') + 1] if match else prefix


def is_output(path):
    return path.split('/')[0] in OUTPUT_ROOTS or path.split('/')[0] == 'datasets' or ignored(path.rstrip('/'))


def written_in_blocks(doc):
    """Output paths the doc's code blocks name (commands that write them, ``../`` of a ``cd`` dropped)."""
    found = set()
    for block in doc.blocks:
        for match in re.finditer(r'(?:\.\./)*((?:' + '|'.join(OUTPUT_ROOTS + ('datasets',)) + r')/[^\s`\'"(),;|]*)',
                                 block.text):
            found.add(clean_path(match[1]).rstrip('/'))
    return found


def anchors(name):
    doc = load_doc(name)
    slugs = set()
    for paragraph in doc.paragraphs:
        if paragraph.kind == 'heading':
            text = re.sub(r'[`*_]|\[([^\]]*)\]\([^)]*\)', lambda m: m[1] or '', paragraph.heading)
            slugs.add(re.sub(r'[^\w\- ]', '', text.lower()).replace(' ', '-'))
    return slugs


def path_problems(doc):
    problems = []
    written = written_in_blocks(doc)
    seen = set()
    for paragraph in doc.paragraphs:
        code_spans = [(m.start(2), m.end(2), m[2]) for m in INLINE.finditer(paragraph.text)]
        for start, clause in clauses(paragraph):
            for match in PATH.finditer(clause):
                where = f'{doc.name}:{paragraph.line_of(start + match.start())}'
                at = start + match.start()
                # a path inside a command, a message or YAML (not a span of its own) is code: what it writes is said
                inside = any(a <= at < b and text.strip() != match[0].strip() for a, b, text in code_spans)
                problems += one_path(match[1], where, clause, written, in_code=inside, seen=seen)
        for match in re.finditer(r'!?\[[^\]]*\]\(([^)\s]+)\)', paragraph.text):
            problems += link_problems(doc, match[1], f'{doc.name}:{paragraph.line_of(match.start())}')
    for block in doc.blocks:
        for index, line in enumerate(block.lines):
            for match in PATH.finditer(line):
                writes = bool(OUTPUT_FLAG.search(line[:match.start()]))  # --output X, --plot X, > X: written
                problems += one_path(match[1], f'{doc.name}:{block.line + index}', line, written, in_code=True,
                                     seen=seen, written_here=writes)
    return problems


def one_path(raw, where, clause, written, in_code, seen, written_here=False):
    problems = []
    for path in expand_braces(clean_path(raw)):
        if (where, path) in seen or path.rstrip('/') in ROOTS:
            continue
        seen.add((where, path))
        prefix = literal_prefix(path)
        placeholder = prefix != path
        check = prefix if placeholder else path
        if not check or check.rstrip('/') in ROOTS:
            continue
        if in_repository(check) or written_here:
            continue
        if is_output(check):
            if in_code or WRITES.search(mask_code(clause)) or any(
                    check.rstrip('/') == w or check.startswith(w + '/') or w.startswith(check.rstrip('/') + '/')
                    for w in written):
                continue
            problems.append(f'{where}: names `{path}`, which no repository holds (output or data: '
                            f'{"git-ignored" if ignored(check.rstrip("/")) else "not in the repository"}) without '
                            'saying what writes it; cite the doc that records its numbers (docs/study.md, '
                            'docs/performance.md) or the command that writes it')
            continue
        problems.append(f'{where}: names `{path}`, which does not exist in the repository')
    return problems


def link_problems(doc, target, where):
    if re.match(r'[a-z]+:', target):
        return []
    target, _, anchor = target.partition('#')
    path = osp.normpath(osp.join(osp.dirname(doc.name), target)) if target else doc.name
    if target and not in_repository(path):
        return [f'{where}: links to `{target}`, which does not exist in the repository ({path})']
    if anchor and path.endswith('.md') and anchor not in anchors(path):
        return [f'{where}: links to `{target}#{anchor}`, a heading {path} does not have; its headings: '
                f'{sorted(anchors(path))[:12]}']
    return []


# ----------------------------------------------------------------------------------------------------------------
# Rule 5: quoted messages.

COMMAND_WORDS = re.compile(r'^(\.?\.?/?[\w./-]*python3?|torchrun|srun|bash|sh|pip|basicsr-diffloss-\S+|'
                           r'huggingface-cli|mkdir|mv|cp|ln|sed|cd|git|[A-Z_]+=|--?\w)\b')
OPTION_ERROR = re.compile(r"^(?:\.\.\. )?[\w.\[\]]+ option '\w+': (?:'[^']*'|\S+) (.*)$")
ABRIDGED = re.compile(r'\.\.\.|…|<[^<>]*>')  # abridged, or filled in by the code (``<path>``)


def is_message(text):
    words = text.split()
    plain_words = [w for w in words if re.fullmatch(r"[A-Za-z][a-z]+[.,:;?!]?", w)]
    if re.search(r"\w option '\w+'", text):  # "<owner> option '<name>': ...", the package's option errors
        return True
    return (len(plain_words) >= 6 and len(plain_words) >= 0.4 * len(words) and not COMMAND_WORDS.match(text)
            and ' = ' not in text and text[:1] not in '([{' and not re.search(r"\w\.\w+\(|\w=['\w]", text))


def message_problems_of(text, where):
    """The abridged parts (``...``, ``<path>``) of a quoted message, each of five words or more looked up in the
    source, and the option an option error names."""
    problems = []
    # options.option_error writes "<owner> option '<name>': <value> <problem>": the problem is what is quoted
    option_error = OPTION_ERROR.match(text)
    for part in ABRIDGED.split(option_error[1] if option_error else text):
        fragment = words(part)
        if len(fragment) >= 5 and not found_in_source(fragment):
            problems.append(f'{where}: quotes a message the source does not hold: "{" ".join(part.split())}" '
                            f'(no string of the package, BasicSR or Real-ESRGAN reads so)')
    owners = code()['owners']
    for owner, name in re.findall(r"\b(DiffLoss|DiffusionPrior) option '(\w+)'", text):
        if name not in owners[owner]:
            holders = [other for other in ('DiffLoss', 'DiffusionPrior') if name in owners[other]]
            problems.append(f"{where}: quotes \"{owner} option '{name}'\"; the code: '{name}' is "
                            + (f'an option of {holders[0]}, whose messages name it' if holders else
                               f'no option of {owner}'))
    return problems


def quoted_message_problems(doc):
    problems = []
    for paragraph in doc.paragraphs:
        for offset, span in spans(paragraph):
            if is_message(span):
                problems += message_problems_of(span, f'{doc.name}:{paragraph.line_of(offset)}')
    for block in doc.blocks:
        if block.lang not in SHELL_LANGS + ('text', 'log'):
            continue
        for index, line in enumerate(block.lines):
            match = re.match(r'\s*(?:\S+ )?(?:INFO|WARNING|ERROR|[\w-]+: error):\s*(.*)$', line)
            if match and not match[1].startswith('['):  # '[name..][epoch: ...]': BasicSR's progress line
                problems += message_problems_of(match[1], f'{doc.name}:{block.line + index}')
    return problems


def markdown_problems(doc):
    """Inline code left open: the spans after it pair up wrongly (a line that starts with '+ ', '- ' or '1. ' starts
    a list item, cutting the paragraph)."""
    problems = []
    for paragraph in doc.paragraphs:
        if len(re.findall(r'`+', paragraph.text)) % 2:
            problems.append(f'{doc.name}:{paragraph.line}: a backtick is left open in this paragraph (a line starting '
                            "with '+ ', '- ' or '1. ' begins a list item)")
    return problems


README_LINES, PARAGRAPH_WORDS = 110, 80


def front_door_problems(doc):
    """README.md: at most 110 lines, no paragraph over 80 words, no git-ignored or generated path (numbers come by
    link)."""
    if doc.name != 'README.md':
        return []
    problems = []
    lines = doc.text.rstrip('\n').count('\n') + 1
    if lines > README_LINES:
        problems.append(f'README.md has {lines} lines; at most {README_LINES}: move detail into docs/ and link it')
    for paragraph in doc.paragraphs:
        words = len(paragraph.text.split())
        if paragraph.kind == 'prose' and words > PARAGRAPH_WORDS:
            problems.append(f'README.md:{paragraph.line}: a paragraph of {words} words; at most {PARAGRAPH_WORDS}')
    texts = [(p.line, p.text) for p in doc.paragraphs] + [(b.line, b.text) for b in doc.blocks]
    for line, text in texts:
        for match in PATH.finditer(text):
            path = clean_path(match[1])
            if ignored(literal_prefix(path)) or (is_output(path) and not in_repository(literal_prefix(path))):
                problems.append(f'README.md:{line}: names `{path}`, a git-ignored or generated path; README links to '
                                'the doc that records what it holds')
    return problems


# ----------------------------------------------------------------------------------------------------------------
# The tests.

RULES = dict(options=option_problems, defaults_and_presets=default_and_preset_problems, log_keys=log_key_problems,
             commands=command_problems, paths=path_problems, messages=quoted_message_problems,
             markdown=markdown_problems, front_door=front_door_problems)


def all_problems(rule):
    return [problem for doc in docs() for problem in RULES[rule](doc)]


@pytest.mark.parametrize('rule', list(RULES))
def test_docs_agree_with_the_code(rule):
    problems = all_problems(rule)
    assert not problems, f'{len(problems)} places where the docs contradict the code ({rule}):\n' + '\n'.join(problems)


def check_text(text, rule, name='docs/example.md'):
    return RULES[rule](Doc(name, text))


def test_the_check_catches_each_kind_of_drift():
    # a preset's value that is not PRESETS'
    assert any("`backprop` preset has eps 2.0" in p and 'eps 1.0' in p for p in check_text(
        '`preset: backprop` keeps the paper\'s gradient at the study\'s strength (eps 2.0, 0.5x L1).',
        'defaults_and_presets'))
    assert not check_text('`preset: paper` sets eps 1e-3, h 1e-6 and t over the whole schedule.',
                          'defaults_and_presets')
    # a stated default that is not the code's
    assert check_text('The default is `max_conflict: 0.5`.', 'defaults_and_presets')
    assert not check_text('The default is `max_conflict: 0`.', 'defaults_and_presets')
    # an option of the wrong class, a value the option refuses, a misspelt option
    assert check_text("```yaml\ndiffusion_opt:\n  type: DiffLoss\n  dtype: bf16\n```\n", 'options')
    assert check_text('With `gradient: backprob` the UNet is differentiated.', 'options')
    assert check_text('Set `max_conflcit: 0`.', 'options')
    # an option table: a name the class does not take, a default that is not the code's
    table = '### `haze`\n\n| option | default | meaning |\n|---|---|---|\n| `{}` | `{}` | x |\n'
    assert check_text(table.format('betta', '[0.5, 2.5]'), 'options')
    assert check_text(table.format('beta', '[0.5, 3.0]'), 'options')
    assert not check_text(table.format('beta', '[0.5, 2.5]'), 'options')
    # log keys: one the code never writes, and a list that misses the guard's
    assert check_text('The log shows `l_diff_eta`.', 'log_keys')
    assert any('without' in p and 'cos_diff' in p for p in check_text(
        'The log shows `l_pix`, then `l_diff_eps` (and `l_diff_h`).', 'log_keys'))
    # commands: a module, a script and a flag that do not exist
    assert check_text('```bash\npython -m basicsr_diffloss.trian -opt x.yml\n```\n', 'commands')
    assert check_text('```bash\npython scripts/nothing_here.py\n```\n', 'commands')
    assert any('--outptu' in p for p in check_text('```bash\nbasicsr-diffloss-compare -opt x.yml --outptu r\n```\n',
                                                   'commands'))
    assert not check_text('```bash\npython -m basicsr_diffloss.train -opt x.yml --auto_resume --launcher pytorch\n'
                          '```\n', 'commands')
    # paths: a missing file, and a git-ignored results folder cited as a source of numbers
    assert check_text('See `options/train/demo/nothing.yml`.', 'paths')
    assert check_text('(± standard error over images; `results/study_v3`.)', 'paths')
    assert not check_text('The command writes `results/compare_demo/`.', 'paths')
    assert check_text('[study](docs/study.md#no-such-heading)', 'paths', name='README.md')
    # a quoted message of an option that belongs to another class
    assert any("DiffusionPrior" in p for p in check_text(
        "`DiffLoss option 'dtype': 'fp8' is not one of ['fp32', 'bf16', 'auto'].`", 'messages'))
    assert check_text('`DiffLoss option \'h_weight\': -0.5 must be smaller than the moon and the stars.`', 'messages')
    # a line that starts a list item inside a paragraph, cutting inline code in two
    assert check_text('Streaks added, `O = B\n+ S` (`blend: add`).', 'markdown')


if __name__ == '__main__':
    for rule in RULES:
        for problem in all_problems(rule):
            print(f'[{rule}] {problem}')
