#!/bin/sh
# Issue 13's experiment end to end: for seeds 0 and 1, the supervised arm (which also makes the
# shared warm-up) then the STC arm; then both arms of both seeds exported and scored on YouTube
# Faces test and HELEN test. About 50 minutes on 2 CPU cores. Resumable: rerun after a stop.
#   nohup sh experiments/stc/run.sh > runs/stc_paper.log 2>&1 &
set -e
P=.venv/bin/pipnet
D=../shared/data
for seed in 0 1; do
    $P train --config experiments/stc/stc_paper_baseline_s$seed.toml --resume
    $P train --config experiments/stc/stc_paper_s$seed.toml --resume
done
mkdir -p models/experiments
for run in stc_paper_baseline_s0 stc_paper_s0 stc_paper_baseline_s1 stc_paper_s1; do
    $P export --checkpoint runs/$run/last.pt --out models/experiments/$run.onnx --version 0.1.0
    for data in ytf68/test 300w_subset/helen/testset; do
        echo "== $run on $data"
        $P eval --model models/experiments/$run.onnx --data $D/$data --json runs/$run/eval_$(basename $data).json
    done
done
