# PyTorch port of bone_fracture.custom_cnn + recipe sweep.  Usage:
#   python sweep.py smoke OUTDIR                 correctness (2 epochs of every recipe) + timing
#   python sweep.py bench OUTDIR NPROC EPOCHS    concurrency throughput test
#   python sweep.py pool OUTDIR NPROC SECONDS PLAN   run the PLAN's job list with NPROC workers
#   python sweep.py worker OUTDIR ID DEADLINE PLAN   (internal)
import os, sys, time, json, math, fcntl, subprocess, copy, warnings
warnings.filterwarnings('ignore')
os.environ.setdefault('OMP_NUM_THREADS', '1')
import numpy as np
import torch, torch.nn as nn, torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
DEV = 'cuda'
torch.backends.cudnn.benchmark = True
torch.set_num_threads(1)
torch.backends.cudnn.allow_tf32 = True; torch.backends.cuda.matmul.allow_tf32 = True

# ---------------------------------------------------------------- recipes
BASE = dict(size=64, widths=(32, 64, 128, 256), dropout=0.4, wd=1e-4, lr=1e-3, bs=16, epochs=100,
            cw=True, ls=0.0, mixup=0.0, aug='base', sched='plateau', patience=30, lr_patience=15,
            ema=0.0, gray=False)
AUG = {'base':   dict(hflip=True, vflip=False, rot=0.05 * 360, zoom=0.1, trans=0.0, contrast=0.2),
       'strong': dict(hflip=True, vflip=True, rot=45.0, zoom=0.2, trans=0.1, contrast=0.2),
       'none':   dict(hflip=False, vflip=False, rot=0.0, zoom=0.0, trans=0.0, contrast=0.0),
       'basetrans': dict(hflip=True, vflip=False, rot=0.05 * 360, zoom=0.1, trans=0.1, contrast=0.2)}

def R(**kw):
    r = dict(BASE); r.update(kw); return r

COS = dict(sched='cos', epochs=150, ema=0.999)
RECIPES = {
    'base':    R(),
    'ls':      R(ls=0.1),
    'mix02':   R(mixup=0.2),
    'mix04':   R(mixup=0.4),
    'strong':  R(aug='strong'),
    'cos150':  R(**COS),                      # variants: last (final weights), ema
    's48':     R(size=48),
    's96':     R(size=96, epochs=150),
    'w16':     R(widths=(16, 32, 64, 128)),
    'w48':     R(widths=(48, 96, 192, 384)),
    'reg':     R(dropout=0.5, wd=5e-4),
    'nocw':    R(cw=False),
    'gray':    R(gray=True),
    # a-priori combinations
    'c_ls_strong_cos':     R(ls=0.1, aug='strong', **COS),
    'c_ls_mix02_strong_cos': R(ls=0.1, mixup=0.2, aug='strong', **COS),
    'c_ls_mix02_strong':   R(ls=0.1, mixup=0.2, aug='strong'),
    'c_strong_cos':        R(aug='strong', **COS),
    'c_ls_mix02_strong_cos300': R(ls=0.1, mixup=0.2, aug='strong', **dict(COS, epochs=300)),
}
EXTRA = os.path.join(HERE, 'recipes_extra.json')   # later calls add recipes here
if os.path.exists(EXTRA):
    for k, v in json.load(open(EXTRA)).items(): RECIPES[k] = R(**v)

def plan_jobs(plan):
    "The ordered job list (recipe, split_seed, init_seed) of a plan file (json list of [recipe, [splits], [inits]])."
    jobs = []
    for rec, splits, inits in json.load(open(os.path.join(HERE, plan))):
        for i in inits:
            for s in splits: jobs.append((rec, s, i))
    return jobs

# ---------------------------------------------------------------- data
_CACHE = {}
def load(size):
    if size not in _CACHE:
        X = np.load(os.path.join(HERE, f'img{size}.npz'))['X']            # N,H,W,3 uint8
        _CACHE[size] = torch.from_numpy(X).permute(0, 3, 1, 2).contiguous().to(DEV)
    return _CACHE[size]
META = np.load(os.path.join(HERE, 'meta.npz'))
Y_ALL = META['y']; PARTS = META['parts']; NC = 10

# ---------------------------------------------------------------- model (port of custom_cnn)
class Net(nn.Module):
    def __init__(self, widths, dropout, nc=NC):
        super().__init__()
        self.stem = nn.Conv2d(3, widths[0], 5, stride=2, padding=0, bias=False)   # 'same' padding done by F.pad(1,2,1,2)
        self.stem_bn = nn.BatchNorm2d(widths[0], eps=1e-3, momentum=0.1)
        layers, cin = [], widths[0]
        self.reg = []                           # conv kernels with L2 (block convs only, as in Keras)
        for w in widths:
            for _ in range(2):
                c = nn.Conv2d(cin, w, 3, padding=1, bias=False); self.reg.append(c.weight)
                layers += [c, nn.BatchNorm2d(w, eps=1e-3, momentum=0.1), nn.ReLU(inplace=True)]; cin = w
            layers.append(nn.MaxPool2d(2))
        self.blocks = nn.Sequential(*layers)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(cin, nc)
        for m in self.modules():                 # Keras defaults: glorot_uniform kernels, zero biases
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None: nn.init.zeros_(m.bias)
    def forward(self, x):
        x = F.relu(self.stem_bn(self.stem(F.pad(x, (1, 2, 1, 2)))))
        x = self.blocks(x).mean((2, 3))
        return self.fc(self.drop(x))

# ---------------------------------------------------------------- augmentation (GPU, batched)
def augment(x, a):
    B = x.shape[0]; d = x.device
    u = lambda *s: torch.rand(*s, device=d) * 2 - 1
    if a['hflip']: x = torch.where(torch.rand(B, 1, 1, 1, device=d) < 0.5, x.flip(3), x)
    if a['vflip']: x = torch.where(torch.rand(B, 1, 1, 1, device=d) < 0.5, x.flip(2), x)
    if a['rot'] or a['zoom'] or a['trans']:
        ang = u(B) * math.radians(a['rot']); z = 1 + u(B) * a['zoom']
        tx, ty = u(B) * 2 * a['trans'], u(B) * 2 * a['trans']
        c, s = torch.cos(ang) * z, torch.sin(ang) * z
        theta = torch.stack([torch.stack([c, -s, tx], 1), torch.stack([s, c, ty], 1)], 1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode='bilinear', padding_mode='zeros', align_corners=False)
    if a['contrast']:
        f = 1 + u(B, 1, 1, 1) * a['contrast']
        m = x.mean((2, 3), keepdim=True)
        x = (x - m) * f + m          # Keras 3 RandomContrast clips to value_range=(0,255): a no-op on [0,1] inputs
    return x

def prep(xu8, gray):
    x = xu8.float() / 255
    if gray: x = x.mean(1, keepdim=True).expand(-1, 3, -1, -1)
    return x.contiguous(memory_format=torch.channels_last)

@torch.no_grad()
def predict(model, xu8, gray, bs=512, tta=True):
    model.eval(); out, outf = [], []
    for i in range(0, len(xu8), bs):
        x = prep(xu8[i:i + bs], gray)
        out.append(model(x).softmax(1))
        if tta: outf.append(model(x.flip(3)).softmax(1))
    p = torch.cat(out); return p, ((p + torch.cat(outf)) / 2 if tta else None)

# ---------------------------------------------------------------- one run
def run(rec_name, split_seed, init_seed, epochs=None, log=None, deadline=None):
    from sklearn.metrics import f1_score
    from sklearn.utils.class_weight import compute_class_weight
    r = RECIPES[rec_name]; ep_total = epochs or r['epochs']; a = AUG[r['aug']]
    t0 = time.time()
    torch.manual_seed(1000 * init_seed + split_seed); np.random.seed(1000 * init_seed + split_seed)
    X = load(r['size']); part = PARTS[split_seed]
    idx = {k: torch.from_numpy(np.flatnonzero(part == v)).to(DEV) for k, v in (('train', 0), ('val', 1), ('test', 2))}
    yt_np = Y_ALL[part == 0]; y_all = torch.from_numpy(Y_ALL).to(DEV)
    cwv = torch.ones(NC, device=DEV)
    if r['cw']:
        present = np.unique(yt_np)
        cwv[torch.from_numpy(present).to(DEV)] = torch.tensor(compute_class_weight('balanced', classes=present, y=yt_np), dtype=torch.float32, device=DEV)
    Xtr, ytr = X[idx['train']], y_all[idx['train']]
    Xva, yva = X[idx['val']], Y_ALL[part == 1]
    n = len(Xtr); bs = r['bs']; steps = math.ceil(n / bs); T = ep_total * steps
    model = Net(r['widths'], r['dropout']).to(DEV).to(memory_format=torch.channels_last)
    regids = {id(p) for p in model.reg}       # Keras L2 wd*sum(w^2) on block conv kernels == coupled Adam weight_decay 2*wd
    opt = torch.optim.Adam([dict(params=model.reg, weight_decay=2 * r['wd']),
                            dict(params=[p for p in model.parameters() if id(p) not in regids], weight_decay=0.0)],
                           lr=r['lr'], eps=1e-7, fused=True)
    ema = None
    if r['ema']:
        ema = copy.deepcopy(model); ema_t = [t for t in list(ema.parameters()) + list(ema.buffers()) if t.dtype.is_floating_point]
        src_t = [t for t in list(model.parameters()) + list(model.buffers()) if t.dtype.is_floating_point]
    lr = r['lr']; best_val, best_ep, best_state = -1.0, -1, None; wait = 0; lr_best = -1.0; lr_wait = 0
    beta = r['mixup'] or None
    step = 0; hist = []; stopped = None; run_acc = 0.0
    for ep in range(ep_total):
        model.train(); perm = torch.randperm(n, device=DEV); correct = torch.zeros((), device=DEV)
        xe = augment(prep(Xtr[perm], r['gray']), a).contiguous(memory_format=torch.channels_last); ye = ytr[perm]
        for b in range(steps):
            if r['sched'] == 'cos':
                lr = r['lr'] * 0.5 * (1 + math.cos(math.pi * step / T))
                for g in opt.param_groups: g['lr'] = lr
            x = xe[b * bs:(b + 1) * bs]; y = ye[b * bs:(b + 1) * bs]; nb = len(y)
            if beta is not None:
                lam = float(np.random.beta(beta, beta)); j = torch.randperm(nb, device=DEV)
                x = lam * x + (1 - lam) * x[j]; y2 = y[j]
            logits = model(x)
            l1 = F.cross_entropy(logits, y, reduction='none', label_smoothing=r['ls']) * cwv[y]
            if beta is not None:
                l1 = lam * l1 + (1 - lam) * F.cross_entropy(logits, y2, reduction='none', label_smoothing=r['ls']) * cwv[y2]
            loss = l1.sum() / nb               # Keras: sum(w * loss) / batch size
            opt.zero_grad(set_to_none=True); loss.backward()
            opt.step(); step += 1
            if ema is not None:
                with torch.no_grad(): torch._foreach_lerp_(ema_t, src_t, 1 - r['ema'])
            correct += (logits.argmax(1) == y).sum()
        pv, _ = predict(model, Xva, r['gray'], tta=False)
        va = float((pv.argmax(1).cpu().numpy() == yva).mean()); run_acc = float(correct) / n
        hist.append((ep, run_acc, va, lr))
        if va > best_val:                       # checkpoint + EarlyStopping(restore) on val accuracy
            best_val, best_ep, wait = va, ep, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else: wait += 1
        if r['sched'] == 'plateau':           # ReduceLROnPlateau(val acc, 0.5, patience, min 1e-6, min_delta 1e-4)
            if va - 1e-4 > lr_best: lr_best, lr_wait = va, 0
            else:
                lr_wait += 1
                if lr_wait >= r['lr_patience']:
                    if lr > 1e-6:
                        lr = max(lr * 0.5, 1e-6)
                        for g in opt.param_groups: g['lr'] = lr
                    lr_wait = 0
            if wait >= r['patience'] and ep > 0: stopped = ep; break
        if deadline and time.time() > deadline: return None, None
    secs = time.time() - t0
    variants = {}
    if r['sched'] == 'plateau':
        variants['last'] = copy.deepcopy(model)
        model.load_state_dict(best_state); variants['sel'] = model
    else:
        variants['last'] = model
    if ema is not None: variants['ema'] = ema
    rows, probs = [], []
    yte = Y_ALL[part == 2]; ytrn = Y_ALL[part == 0]
    for v, m in variants.items():
        pt, ptt = predict(m, X[idx['test']], r['gray'])
        pva, _ = predict(m, Xva, r['gray'], tta=False); ptr, _ = predict(m, Xtr, r['gray'], tta=False)
        pred, predt = pt.argmax(1).cpu().numpy(), ptt.argmax(1).cpu().numpy()
        rows.append(dict(recipe=rec_name, variant=v, split=split_seed, init=init_seed, epochs_run=len(hist), best_epoch=best_ep + 1,
                         best_val=best_val, val_acc=float((pva.argmax(1).cpu().numpy() == yva).mean()),
                         test_acc=float((pred == yte).mean()), test_f1=float(f1_score(yte, pred, average='macro')),
                         tta_acc=float((predt == yte).mean()), tta_f1=float(f1_score(yte, predt, average='macro')),
                         train_acc=float((ptr.argmax(1).cpu().numpy() == ytrn).mean()), train_run_acc=run_acc,
                         final_lr=lr, seconds=round(secs, 1)))
        probs.append(dict(recipe=rec_name, variant=v, split=split_seed, init=init_seed,
                          p=np.round(pt.cpu().numpy(), 5).tolist(), ptta=np.round(ptt.cpu().numpy(), 5).tolist()))
    return rows, probs

# ---------------------------------------------------------------- output
def append(path, lines):
    with open(path, 'a') as f:
        fcntl.flock(f, fcntl.LOCK_EX); f.write(''.join(lines)); f.flush(); fcntl.flock(f, fcntl.LOCK_UN)

COLS = ['recipe', 'variant', 'split', 'init', 'epochs_run', 'best_epoch', 'best_val', 'val_acc', 'test_acc', 'test_f1',
        'tta_acc', 'tta_f1', 'train_acc', 'train_run_acc', 'final_lr', 'seconds']
def write(out, rows, probs, name='results.csv'):
    path = os.path.join(out, name)
    if not os.path.exists(path):
        try:
            fd = os.open('/tmp/hdr_' + name, os.O_CREAT | os.O_EXCL); os.close(fd); append(path, [','.join(COLS) + '\n'])
        except FileExistsError: time.sleep(0.5)
    append(path, [','.join(str(r[c]) for c in COLS) + '\n' for r in rows])
    if probs: append(os.path.join(out, 'probs.jsonl'), [json.dumps(p) + '\n' for p in probs])

# ---------------------------------------------------------------- modes
def worker(out, wid, deadline, plan):
    deadline = float(deadline); claims = '/tmp/claims_' + plan.replace('/', '_'); os.makedirs(claims, exist_ok=True)
    for rec, s, i in plan_jobs(plan):
        r = RECIPES[rec]
        est = r['epochs'] * float(os.environ.get('EPS', '0.7')) * (1.3 if r['size'] > 64 else 1) * (1.3 if r['widths'][0] > 32 else 1)   # rough s per run
        if time.time() + min(est, 200) > deadline: continue
        try: fd = os.open(os.path.join(claims, f'{rec}_{s}_{i}'), os.O_CREAT | os.O_EXCL); os.close(fd)
        except FileExistsError: continue
        try: rows, probs = run(rec, s, i, deadline=deadline)
        except Exception:
            import traceback; print(f'[w{wid}] {rec} s{s} i{i} FAILED\n' + traceback.format_exc(), flush=True); continue
        if rows is None: print(f'[w{wid}] {rec} s{s} i{i} ABORTED at deadline', flush=True); continue
        write(out, rows, probs)
        print(f'[w{wid}] ' + ' | '.join(f"{x['recipe']}/{x['variant']} s{s} i{i}: test {x['test_acc']:.3f} f1 {x['test_f1']:.3f} tta {x['tta_acc']:.3f} "
                                      f"val {x['best_val']:.3f} tr {x['train_acc']:.2f} ep {x['epochs_run']} {x['seconds']}s" for x in rows), flush=True)

def pool(out, nproc, seconds, plan):
    deadline = time.time() + float(seconds)
    ps = [subprocess.Popen([sys.executable, __file__, 'worker', out, str(k), str(deadline), plan]) for k in range(int(nproc))]
    for p in ps: p.wait()
    print('pool done', round(time.time() - deadline + float(seconds)), 's', flush=True)

def bench(out, nproc, epochs):
    t = time.time()
    ps = [subprocess.Popen([sys.executable, __file__, 'bench1', out, str(k), str(epochs)]) for k in range(int(nproc))]
    for p in ps: p.wait()
    print(f'bench {nproc} procs x {epochs} epochs: {time.time() - t:.1f}s wall', flush=True)

def bench1(out, k, epochs):
    t = time.time(); rows, _ = run('base', 0, int(k), epochs=int(epochs))
    print(f'  bench worker {k}: {time.time() - t:.1f}s incl. start, run {rows[0]["seconds"]}s', flush=True)

def smoke(out):
    print(torch.__version__, torch.cuda.get_device_name(0), flush=True)
    t = time.time()
    for rec in RECIPES:
        rows, probs = run(rec, 0, 0, epochs=2)
        write(out, rows, [], 'smoke.csv')
        print(rec, [(x['variant'], round(x['test_acc'], 3), x['seconds']) for x in rows], flush=True)
    print(f'smoke all recipes: {time.time() - t:.1f}s', flush=True)
    t = time.time(); rows, probs = run('base', 0, 0, epochs=100)
    for x in rows: print('full base run', x, flush=True)
    write(out, rows, probs, 'smoke_full.csv')

if __name__ == '__main__':
    mode, out = sys.argv[1], sys.argv[2]; os.makedirs(out, exist_ok=True)
    {'smoke': smoke, 'bench': bench, 'bench1': bench1, 'pool': pool, 'worker': worker}[mode](out, *sys.argv[3:])
