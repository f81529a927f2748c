#!/usr/bin/env python3
"""Authoring helper: convert a percent-format script into a clean .ipynb (and back).

  python scripts/pct2nb.py to-nb  src.py  dst.ipynb
  python scripts/pct2nb.py to-py  src.ipynb dst.py

Cells start with '# %%' (code), '# %% [markdown]' (markdown; each line starts with '# ' or '#').
Tags: '# %% tags=["parameters"]'. Markdown cells: lines prefixed with '# ' are unprefixed.
"""
import json, re, sys

def to_nb(src, dst):
    text = open(src).read()
    cells, cur = [], None
    for line in text.splitlines():
        m = re.match(r'^# %%(.*)$', line)
        if m:
            if cur: cells.append(cur)
            rest = m.group(1)
            kind = 'markdown' if '[markdown]' in rest else 'code'
            tm = re.search(r'tags=(\[.*?\])', rest)
            tags = json.loads(tm.group(1)) if tm else []
            cur = dict(kind=kind, tags=tags, lines=[])
            continue
        if cur is None:
            if line.strip() == '': continue
            cur = dict(kind='code', tags=[], lines=[])
        if cur['kind'] == 'markdown':
            if line.startswith('# '): line = line[2:]
            elif line.startswith('#'): line = line[1:]
        cur['lines'].append(line)
    if cur: cells.append(cur)
    out = []
    for c in cells:
        lines = c['lines']
        while lines and lines[-1].strip() == '': lines.pop()
        while lines and lines[0].strip() == '': lines.pop(0)
        src_lines = [l + '\n' for l in lines]
        if src_lines: src_lines[-1] = src_lines[-1].rstrip('\n')
        meta = {'tags': c['tags']} if c['tags'] else {}
        cell = dict(cell_type=c['kind'], metadata=meta, source=src_lines)
        if c['kind'] == 'code':
            cell.update(execution_count=None, outputs=[])
        out.append(cell)
    nb = dict(cells=out, metadata=dict(
        kernelspec=dict(display_name='Python (mla_cmg)', language='python', name='mla_cmg'),
        language_info=dict(name='python')), nbformat=4, nbformat_minor=5)
    for i, c in enumerate(nb['cells']): c['id'] = f'c{i:03d}'
    with open(dst, 'w') as f: json.dump(nb, f, indent=1, ensure_ascii=False); f.write('\n')

def to_py(src, dst):
    nb = json.load(open(src))
    parts = []
    for c in nb['cells']:
        tags = c.get('metadata', {}).get('tags', [])
        t = f' tags={json.dumps(tags)}' if tags else ''
        body = ''.join(c['source'])
        if c['cell_type'] == 'markdown':
            parts.append(f'# %% [markdown]{t}\n' + '\n'.join(('# ' + l) if l else '#' for l in body.split('\n')))
        else:
            parts.append(f'# %%{t}\n' + body)
    open(dst, 'w').write('\n\n'.join(parts) + '\n')

if __name__ == '__main__':
    {'to-nb': to_nb, 'to-py': to_py}[sys.argv[1]](sys.argv[2], sys.argv[3])
