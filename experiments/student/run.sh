#!/bin/sh
# The student of issue 34 as it is trained here: the crop archives with model 1.2.1's points, the
# 3-epoch comparisons (random start; learning rates), the 40-epoch run at Adam 1e-4, the 60-epoch
# run at 1e-3 with its export and INT8 twin, and the larger candidate at 160 pixels. Run from the
# repository root; resumable (rerun it after an interruption). On 2 CPU cores the 128-pixel
# student trains at about 150 crops/s (an epoch a minute); `pipnet train` uses CUDA where there is
# one. The turned copies and crops with no face come from experiments/turned-heads/run.sh (its
# prepare-data commands).
set -e
P=.venv/bin/pipnet
HERE=experiments/student
RUNS=$HOME/.cache/pipnet-live/runs
LICENCE="non-commercial research use only: trained on 300-W (HELEN, AFW) and YouTube Faces, which are licensed for non-commercial research"

# The teacher: model 1.2.1's float file as shipped (from git, whatever models/ holds later).
mkdir -p build/student
test -f build/student/teacher_1.2.1.onnx || git show d4d4d05:models/pipnet_mbv2_68.onnx > build/student/teacher_1.2.1.onnx
test -f build/archive/student.npz ||
    $P pack --config $HERE/student_w05_128.toml --teacher build/student/teacher_1.2.1.onnx --out build/archive/student.npz
$P train --config $HERE/student_w05_128_random.toml --archive build/archive/student.npz --resume
$P train --config $HERE/student_w05_128.toml --archive build/archive/student.npz --resume
$P train --config $HERE/student_w05_128.toml --archive build/archive/student.npz --resume \
    --set train.lr=3e-4 --set train.epochs=3 --out $RUNS/student_w05_128_lr3e-4
$P train --config $HERE/student_w05_128_lr1e-3.toml --archive build/archive/student.npz --resume
$P export --checkpoint $RUNS/student_w05_128_lr1e-3/last.pt --out build/student/pipnet_student_68.onnx \
    --name pipnet_student_68 --version 0.2.0 --licence "$LICENCE"
$P quantize --model build/student/pipnet_student_68.onnx --config $HERE/student_w05_128_lr1e-3.toml

test -f build/archive/student_160.npz ||
    $P pack --config $HERE/student_w075_160.toml --teacher build/student/teacher_1.2.1.onnx --out build/archive/student_160.npz
$P train --config $HERE/student_w075_160.toml --archive build/archive/student_160.npz --resume
$P export --checkpoint $RUNS/student_w075_160/last.pt --out build/student/pipnet_student_160.onnx \
    --name pipnet_student_68 --version 0.3.0 --licence "$LICENCE"
$P quantize --model build/student/pipnet_student_160.onnx --config $HERE/student_w075_160.toml
