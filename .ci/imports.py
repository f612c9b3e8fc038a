#!/usr/bin/env python3
"""The import graph of a crate's top-level modules (edges from `crate::` paths outside comments
and tests), and the circles in it; exits 1 if there is one.

Usage: .ci/imports.py crates/latchkey-core/src [git-revision]"""
import re, sys, os, subprocess, collections
root = sys.argv[1]  # e.g. crates/latchkey-core/src
rev = sys.argv[2] if len(sys.argv) > 2 else None
def files():
    if rev:
        out = subprocess.run(['git','ls-tree','-r','--name-only',rev,root],capture_output=True,text=True).stdout.split()
        return [(f, subprocess.run(['git','show',f'{rev}:{f}'],capture_output=True,text=True).stdout) for f in out if f.endswith('.rs')]
    res=[]
    for d,_,fs in os.walk(root):
        for f in fs:
            if f.endswith('.rs'): p=os.path.join(d,f); res.append((p, open(p).read()))
    return res
def top(path):
    rel = os.path.relpath(path, root)
    parts = rel[:-3].split('/')
    if parts[0] in ('lib','main'): return None
    return parts[0]
edges = collections.defaultdict(set)
for path, text in files():
    m = top(path)
    if m is None: continue
    # skip test modules
    text = text.split('#[cfg(test)]')[0]
    text = re.sub(r'//.*', '', text)
    for t in re.findall(r'crate::([a-z_]+)', text):
        if t != m: edges[m].add(t)
mods = sorted(set(edges) | {t for v in edges.values() for t in v})
for m in mods:
    print(f"{m:14} -> {', '.join(sorted(edges.get(m, [])))}")
# cycles: strongly connected components of size > 1
index = {}; low = {}; stack=[]; on=set(); sccs=[]; i=[0]
def sc(v):
    index[v]=low[v]=i[0]; i[0]+=1; stack.append(v); on.add(v)
    for w in edges.get(v, []):
        if w not in index: sc(w); low[v]=min(low[v],low[w])
        elif w in on: low[v]=min(low[v],index[w])
    if low[v]==index[v]:
        c=[]
        while True:
            w=stack.pop(); on.discard(w); c.append(w)
            if w==v: break
        if len(c)>1: sccs.append(sorted(c))
for v in mods:
    if v not in index: sc(v)
print("cycles:", sccs if sccs else "none")
sys.exit(1 if sccs else 0)
