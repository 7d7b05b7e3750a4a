#!/bin/sh
# Every accuracy set issue 34 compares the student with model 1.2.1 on, for one ONNX file:
#   experiments/student/eval.sh build/student/pipnet_student_68_int8.onnx > student_eval.log
# Run from the repository root. The turned and non-face test sets come from the prepare-data
# commands in models/README.md (made once, kept in ~/.cache/pipnet-live/data). About 25 minutes
# on 2 cores, most of it bench-quality's Face Mesh reference.
set -e
M=${1:?usage: experiments/student/eval.sh MODEL.onnx}
P=.venv/bin/pipnet
HELEN=../shared/data/300w_subset/helen/testset
CACHE=$HOME/.cache/pipnet-live/data
run() { echo "== $*"; "$@"; }

run $P eval --model "$M" --data $HELEN
run $P eval --model "$M" --data $HELEN --detector blazeface-both
run $P eval --model "$M" --data ../shared/data/ytf68/test
run $P eval --model "$M" --data $CACHE/helen_test_turned --yaw
run $P eval --model "$M" --negatives $CACHE/helen_test_negatives
run $P eval-clip --model "$M" --turn 75
run $P eval --model "$M" --data $HELEN --rotate 0 45 90 135 180 -45 -90 -135
run $P eval --model "$M" --data $HELEN --face-height 40 60 90
run $P bench-quality --model "$M" ../shared/videos
