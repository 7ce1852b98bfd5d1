# Build leakage-free splits for seeds 0-4 and pre-resized uint8 image arrays (48/64/96 px).
import numpy as np, pandas as pd, json, os, sys
from pathlib import Path
from bone_fracture.pipeline import study_data
from bone_fracture.pipeline import load_image
out = Path(__file__).parent   # next to sweep.py, which reads it there (git-ignored); run from the repository root
DATA = os.environ['BONE_FRACTURE_DATA']            # the Kaggle copy
parts = {}; root = None; classes = None; master = None
for s in range(5):
    data, splits = study_data(DATA, 'leakage_free', seed=s)
    root, classes = data.root, data.classes
    t = pd.concat([v.assign(part=k) for k, v in data.parts.items()])
    if master is None: master = sorted(splits.path)
    m = dict(zip(t.path, t.part))
    parts[s] = np.array([{'train': 0, 'val': 1, 'test': 2}[m[p]] for p in master], dtype=np.int8)
    if s <= 2 and Path(f'runs/real/custom-seed{s}/splits.csv').exists():  # the study's own runs, if trained
        ref = pd.read_csv(f'runs/real/custom-seed{s}/splits.csv')
        rm = dict(zip(ref.path, ref.leakage_free))
        agree = all(rm[p] == m[p] for p in master) and len(rm) == len(master)
        print('seed', s, 'agrees with study splits.csv:', agree, flush=True)
    print('seed', s, {k: len(v) for k, v in data.parts.items()}, flush=True)
lab = dict(zip(splits.path, splits.label))
y = np.array([classes.index(lab[p]) for p in master], dtype=np.int64)
for size in (48, 64, 96):
    X = np.stack([load_image(root/p, size) for p in master])
    np.savez_compressed(out/f'img{size}.npz', X=X)
    print(size, X.shape, flush=True)
np.savez(out/'meta.npz', y=y, parts=np.stack([parts[s] for s in range(5)]), paths=np.array(master), classes=np.array(classes))
print('done')
