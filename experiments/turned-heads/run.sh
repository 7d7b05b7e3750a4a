#!/bin/sh
# Model 1.2.1 as it was made (issue 31): the data, three fine-tuning steps from 1.1's ONNX file,
# the exports, the INT8 twin. Run from the repository root; resumable (rerun it after an
# interruption: each step continues its run folder, finished steps are skipped).
# About 100 minutes of training on 2 CPU cores; `pipnet train` uses CUDA where there is one.
set -e
P=.venv/bin/pipnet
DATA=../shared/data
PREPARED=$HOME/.cache/pipnet-live/data
RUNS=$HOME/.cache/pipnet-live/runs
HERE=experiments/turned-heads
LICENCE="non-commercial research use only: trained on 300-W (HELEN, AFW) and YouTube Faces, which are licensed for non-commercial research"

test -f $PREPARED/helen_afw_turned/turns.csv ||
    $P prepare-data --data $DATA/300w_subset/helen/trainset $DATA/300w_subset/afw --out $PREPARED/helen_afw_turned --per-face 2
test -f $PREPARED/helen_afw_profile/turns.csv ||
    $P prepare-data --data $DATA/300w_subset/helen/trainset $DATA/300w_subset/afw --out $PREPARED/helen_afw_profile --per-face 1 --yaw-range 60 90 --seed 1
test -f $PREPARED/helen_afw_negatives/negatives.csv ||
    $P prepare-data --negatives --data $DATA/300w_subset/helen/trainset $DATA/300w_subset/afw --out $PREPARED/helen_afw_negatives --per-image 2

# Step 1 starts from model 1.1.1 as shipped before 1.2 (the file is in git's history).
mkdir -p build/turned/1.1 build/turned/step2
test -f build/turned/1.1/pipnet_mbv2_68.onnx ||
    git show 3d31a67:models/pipnet_mbv2_68.onnx > build/turned/1.1/pipnet_mbv2_68.onnx
$P train --config $HERE/pipnet_mbv2_68_turned.toml --resume
# Step 2 continues step 1's last epoch (its init); step 3 starts from step 2's export, 1.2.0.
$P train --config $HERE/pipnet_mbv2_68_profile.toml --resume
$P export --checkpoint $RUNS/pipnet_mbv2_68_profile/best.pt --out build/turned/step2/pipnet_mbv2_68.onnx --name pipnet_mbv2_68 --version 1.2.0 --licence "$LICENCE"
$P train --config $HERE/pipnet_mbv2_68_upright.toml --resume
$P export --checkpoint $RUNS/pipnet_mbv2_68_upright/last.pt --out build/turned/pipnet_mbv2_68.onnx --name pipnet_mbv2_68 --version 1.2.1 --licence "$LICENCE"
$P quantize --model build/turned/pipnet_mbv2_68.onnx --config $HERE/pipnet_mbv2_68_upright.toml
