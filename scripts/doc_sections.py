"""Measured tables live in the docs between markers that the command which measured them rewrites, headed by the
machine that measured them."""


def write_doc_section(path, section, markdown):
    """Replace what lies between ``<!-- SECTION -->`` and ``<!-- /SECTION -->`` in ``path`` by ``markdown``; the markers
    must be there (a doc says where its measured tables go)."""
    begin, end = f'<!-- {section} -->', f'<!-- /{section} -->'
    with open(path) as file:
        text = file.read()
    if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
        raise SystemExit(f"{path}: needs one '{begin}' line before one '{end}' line where the table goes.")
    before, rest = text.split(begin)
    after = rest.split(end)[1]
    with open(path, 'w') as file:
        file.write(f'{before}{begin}\n{markdown.strip()}\n{end}{after}')


def cpu_kind():
    """The CPU's model name and whether it multiplies bf16 natively (AMX, AVX512-BF16), from /proc/cpuinfo."""
    try:
        with open('/proc/cpuinfo') as file:
            info = file.read()
    except OSError:
        return 'CPU'
    lines = info.splitlines()
    model = next((line.split(':', 1)[1].strip() for line in lines if line.startswith('model name')), 'CPU')
    flags = next((line.split(':', 1)[1].split() for line in lines if line.startswith('flags')), [])
    native = [name for name in ('amx_bf16', 'avx512_bf16') if name in flags]
    return f"{model} ({', '.join(native) if native else 'no native bf16: AVX2'})"
