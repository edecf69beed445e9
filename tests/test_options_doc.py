"""docs/options.md is what scripts/generate_options_doc.py writes from the code, and the generator notices drift."""
import ast
import shutil

import pytest

import generate_options_doc as generator


@pytest.fixture(scope='module')
def generated():
    return generator.render()


def test_options_doc_is_up_to_date(generated):
    text, _ = generated
    assert generator.stale_message(generator.DOC, text) is None, generator.stale_message(generator.DOC, text)


def test_every_option_is_documented_once_with_the_codes_default(generated):
    _, problems = generated
    assert not problems, '\n'.join(problems)


def test_a_stale_copy_is_reported_with_the_command_that_fixes_it(generated, tmp_path, capsys):
    text, _ = generated
    stale = tmp_path / 'options.md'
    shutil.copy(generator.DOC, stale)
    stale.write_text(stale.read_text().replace('| `num_samples` | int | 1 |', '| `num_samples` | int | 4 |'))
    message = generator.stale_message(str(stale), text)
    assert message is not None and 'is stale' in message and generator.COMMAND in message
    assert "'-| `num_samples` | int | 4 |" in message
    assert generator.main(['--check', str(stale)]) == 1
    assert 'is stale' in capsys.readouterr().err


def test_undocumented_and_contradicting_options_are_problems(monkeypatch):
    source = '''
class Toy:
    """A toy.

    Args:
        size (int): side. Default: 32.
        gone (int): not an option any more. Default: 1.
    """

    def __init__(self, size=64, mode='fast'):
        pass
'''
    monkeypatch.setattr(generator, 'class_node', lambda file, name: next(
        node for node in ast.walk(ast.parse(source)) if isinstance(node, ast.ClassDef) and node.name == name))
    lines, problems = generator.reference_section(generator.Reference('Toy', 'toy.py', 'REGISTRY', '`toy`',
                                                                      'signature'))
    assert len(problems) == 3
    assert any('\'size\': the docstring says "Default: 32", the code\'s default is 64' in problem for problem in problems)
    assert any("documents 'gone'" in problem for problem in problems)
    assert any("['mode'] are not documented" in problem for problem in problems)
    assert '| `size` | int | 32 | side. |' in lines
