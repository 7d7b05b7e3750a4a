#!/bin/sh
# The student of issue 34 as it is trained here: the crop archive with model 1.2.1's points, the
# 3-epoch comparison from random weights, the 40-epoch run from narrowed ImageNet weights, its
# export and INT8 twin. Run from the repository root; resumable (rerun it after an interruption).
# About 45 minutes on 2 CPU cores (the student trains at about 150 crops/s); `pipnet train` uses
# CUDA where there is one. The turned copies and crops with no face come from
# experiments/turned-heads/run.sh (its prepare-data commands).
set -e
P=.venv/bin/pipnet
HERE=experiments/student
RUN=$HOME/.cache/pipnet-live/runs/student_w05_128
LICENCE="non-commercial research use only: trained on 300-W (HELEN, AFW) and YouTube Faces, which are licensed for non-commercial research"

# The teacher: model 1.2.1's float file as shipped (from git, whatever models/ holds later).
mkdir -p build/student
test -f build/student/teacher_1.2.1.onnx || git show d4d4d05:models/pipnet_mbv2_68.onnx > build/student/teacher_1.2.1.onnx
test -f build/archive/student.npz ||
    $P pack --config $HERE/student_w05_128.toml --teacher build/student/teacher_1.2.1.onnx --out build/archive/student.npz
$P train --config $HERE/student_w05_128_random.toml --archive build/archive/student.npz --resume
$P train --config $HERE/student_w05_128.toml --archive build/archive/student.npz --resume
$P export --checkpoint $RUN/last.pt --out build/student/pipnet_student_68.onnx --name pipnet_student_68 --version 1.3.0 --licence "$LICENCE"
$P quantize --model build/student/pipnet_student_68.onnx --config $HERE/student_w05_128.toml
