"""One CPU run of a variant of the study's custom-CNN recipe on the real leakage-free split; prints its test scores.

    BONE_FRACTURE_DATA=DIR python variant.py VARIANT SEED OUT_DIR

VARIANT is `px96` or `px128` (the study's recipe, `bone_fracture train ... --schedule cosine`, at 96 or
128 px instead of 64), `trainval` (the study's 64-px recipe trained on the training and validation
images together: the cosine recipe uses the validation images for no decision, so they can be trained on)
or `sgd` (the study's 64-px recipe with SGD, Nesterov momentum 0.9, from 0.02, instead of Adam from 1e-3).
The last line printed is `RESULT {json}` with the test accuracy and macro-F1.
"""
import json, os, sys, time
from pathlib import Path

import keras
import pandas as pd
import tensorflow as tf
from sklearn.metrics import accuracy_score, f1_score

from bone_fracture.custom_cnn import custom_cnn
from bone_fracture.data import DATA_ENV
from bone_fracture.experiment import train_run
from bone_fracture.pipeline import study_data
from bone_fracture.runs import Run, TrainConfig
from bone_fracture.train import compile_model, fit, precision_policy

VARIANTS = ('px96', 'px128', 'trainval', 'sgd')

def recipe(seed:int, image_size:int=64, lr:float=1e-3)->TrainConfig:
    "The study's recipe (nbs/21_custom_cnn.ipynb) on the data of `BONE_FRACTURE_DATA`."
    return TrainConfig(model='custom', data=os.environ[DATA_ENV], image_size=image_size, epochs=150, batch_size=16,
                       schedule='cosine', lr=lr, seed=seed)

def train_changed(cfg:TrainConfig, out:Path, add_val:bool=False, sgd:bool=False):
    "`train_run`'s custom-CNN branch with the validation images added to training, or with SGD; test labels, probabilities, training images."
    keras.utils.set_random_seed(cfg.seed); tf.config.experimental.enable_op_determinism()
    data, _ = study_data(cfg.data, cfg.split, cfg.seed)
    if add_val: data.parts['train'] = pd.concat([data.parts['train'], data.parts['val']], ignore_index=True)
    with precision_policy(cfg.precision):
        model = custom_cnn(len(data.classes), cfg.image_size)
        if sgd: model.compile(optimizer=keras.optimizers.SGD(cfg.lr, momentum=0.9, nesterov=True),
                              loss='sparse_categorical_crossentropy', metrics=['accuracy'], jit_compile=False)
        else: compile_model(model, cfg.lr)
        run = Run(out)
        fit(model, data.dataset('train', cfg.image_size, cfg.batch_size, True, cfg.seed), data.dataset('val', cfg.image_size, cfg.batch_size),
            run, epochs=cfg.epochs, patience=cfg.patience, class_weight=data.class_weight(), verbose=2, monitor=cfg.monitor,
            schedule=cfg.schedule)
        probs = run.model().predict(data.dataset('test', cfg.image_size, cfg.batch_size), verbose=0)
    return data.parts['test'].y.values, probs, len(data.parts['train'])

if __name__ == '__main__':
    variant, seed, out = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    if variant not in VARIANTS: sys.exit(f'VARIANT must be one of {VARIANTS}, not {variant!r}')
    if DATA_ENV not in os.environ: sys.exit(f'set {DATA_ENV} to the folder of the Kaggle copy')
    start = time.perf_counter()
    if variant == 'trainval': y, probs, n_train = train_changed(recipe(seed), out, add_val=True)
    elif variant == 'sgd': y, probs, n_train = train_changed(recipe(seed, lr=0.02), out, sgd=True)
    else:
        info = train_run(recipe(seed, int(variant[2:])), out, verbose=2)
        (y, probs, _), n_train = Run(out).predict('test'), info['images']['train']
    pred = probs.argmax(1)
    print('RESULT', json.dumps({'variant': variant, 'seed': seed, 'train_images': n_train, 'test_accuracy': round(accuracy_score(y, pred), 4),
                                'test_macro_f1': round(f1_score(y, pred, average='macro'), 4),
                                'seconds': round(time.perf_counter() - start, 1)}), flush=True)
