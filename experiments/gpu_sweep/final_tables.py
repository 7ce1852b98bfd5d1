import pandas as pd, numpy as np, json, itertools, warnings; warnings.filterwarnings('ignore')
from sklearn.metrics import f1_score
d=pd.read_csv('../../nbs/results/recipe_sweep.csv')   # the sweep's runs, kept where the report reads them
pd.set_option('display.width',250); pd.set_option('display.max_rows',300)
def tab(d):
    return d.groupby(['recipe','variant']).agg(n=('test_acc','size'),acc=('test_acc','mean'),sd=('test_acc','std'),f1=('test_f1','mean'),f1sd=('test_f1','std'),tta=('tta_acc','mean'),ttaf1=('tta_f1','mean'),tr=('train_acc','mean'),bv=('best_val','mean'),ep=('epochs_run','mean'),sec=('seconds','mean')).round(3)
print('== init seed 0 only (one run per split seed) =='); print(tab(d[d.init==0]).sort_values('acc',ascending=False).to_string())
print('\n== all init seeds pooled =='); print(tab(d).sort_values('acc',ascending=False).to_string())
meta=np.load('meta.npz'); Y,P=meta['y'],meta['parts']
pr=[json.loads(l) for l in open('probs_all.jsonl')]
ens={}
for p in pr: ens.setdefault((p['recipe'],p['variant'],p['split']),{})[p['init']]=p
rows=[]
for (rec,v,s),m in ens.items():
    yte=Y[P[s]==2]
    for k in (3,5):
        if len(m)<k: continue
        for key in ('p','ptta'):
            q=np.mean([np.array(m[i][key]) for i in sorted(m)[:k]],0).argmax(1)
            rows.append(dict(recipe=rec,variant=v,split=s,kind=f'ens{k}'+('+tta' if key=='ptta' else ''),acc=(q==yte).mean(),f1=f1_score(yte,q,average='macro')))
e=pd.DataFrame(rows)
print('\n== ensembles (average of softmax probs over init seeds 0..k-1, same split) ==')
print(e.groupby(['recipe','variant','kind']).agg(n=('acc','size'),acc=('acc','mean'),acc_sd=('acc','std'),f1=('f1','mean'),f1_sd=('f1','std')).round(3).to_string())
print(e[e.kind.str.startswith('ens5')].pivot_table(index=['recipe','variant','kind'],columns='split',values='acc').round(3).to_string())
# paired differences vs base (init 0), per split
b=d[(d.init==0)].set_index(['recipe','variant','split']).test_acc
print('\n== paired gain over base/sel, same split seeds (init 0) ==')
out=[]
for (r,v) in sorted(set(zip(d.recipe,d.variant))):
    try: diff=(b.loc[r,v]-b.loc['base','sel']).dropna()
    except KeyError: continue
    out.append((r,v,len(diff),round(diff.mean(),3),round(diff.std()/np.sqrt(len(diff)),3)))
print(pd.DataFrame(out,columns=['recipe','variant','n','gain','se']).sort_values('gain',ascending=False).to_string(index=False))
