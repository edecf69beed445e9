"""Run several option files through BasicSR's pipelines in one process (one import of torch and basicsr for all).

Usage: ``python option_file_driver.py PLAN.json RESULTS.json`` from the experiment root. PLAN is a list of
``{"option_file": ..., "run_file": ..., "kind": "train" | "test"}`` (optionally ``"args"``: more command-line
arguments, e.g. ``["--auto_resume"]``), run in order; RESULTS maps each option_file to
``{"ok": bool, "error": traceback, "log": the basicsr log of that run, "seconds": float}``. A failing file does not
stop the others.
"""
import io
import json
import logging
import os
import sys
import time
import traceback

import basicsr_diffloss  # noqa: F401  (repairs basicsr and registers everything)
from basicsr.test import test_pipeline
from basicsr.train import train_pipeline

PIPELINES = {'train': train_pipeline, 'test': test_pipeline}


def run(entry):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger('basicsr')
    logger.addHandler(handler)
    sys.argv = [f'{entry["kind"]}.py', '-opt', entry['run_file'], *entry.get('args', [])]
    start = time.time()
    try:
        PIPELINES[entry['kind']](os.getcwd())
        ok, error = True, ''
    except (Exception, SystemExit):
        ok, error = False, traceback.format_exc()
    finally:
        logger.removeHandler(handler)
    return dict(ok=ok, error=error, log=stream.getvalue(), seconds=round(time.time() - start, 2))


def main(plan_path, results_path):
    with open(plan_path) as f:
        plan = json.load(f)
    results = {}
    for entry in plan:
        results[entry['option_file']] = run(entry)
        with open(results_path, 'w') as f:  # written after every file, so a crash keeps what ran
            json.dump(results, f)


if __name__ == '__main__':
    main(*sys.argv[1:])
