#!/bin/sh
# Model 1.2 as it was made (issue 31): the data, the fine-tuning from 1.1's ONNX file, the export,
# the INT8 twin. Run from the repository root; resumable (rerun it after an interruption).
# About 65 minutes of training on 2 CPU cores; `pipnet train` uses CUDA where there is one.
set -e
P=.venv/bin/pipnet
DATA=../shared/data
PREPARED=$HOME/.cache/pipnet-live/data
RUN=$HOME/.cache/pipnet-live/runs/pipnet_mbv2_68_turned
CONFIG=experiments/turned-heads/pipnet_mbv2_68_turned.toml
LICENCE="non-commercial research use only: trained on 300-W (HELEN, AFW) and YouTube Faces, which are licensed for non-commercial research"

test -f $PREPARED/helen_afw_turned/turns.csv ||
    $P prepare-data --data $DATA/300w_subset/helen/trainset $DATA/300w_subset/afw --out $PREPARED/helen_afw_turned --per-face 2
test -f $PREPARED/helen_afw_negatives/negatives.csv ||
    $P prepare-data --negatives --data $DATA/300w_subset/helen/trainset $DATA/300w_subset/afw --out $PREPARED/helen_afw_negatives --per-image 2
$P train --config $CONFIG --resume
$P export --checkpoint $RUN/best.pt --out build/turned/pipnet_mbv2_68.onnx --name pipnet_mbv2_68 --version 1.2.0 --licence "$LICENCE"
$P quantize --model build/turned/pipnet_mbv2_68.onnx --config $CONFIG
