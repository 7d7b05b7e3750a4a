"""The shipped model's recipe: configs/ holds its steps and nothing else, and they rebuild it from
the ImageNet weights and the data alone, each step starting from the one before (never from a
shipped model file, which a rebuild would then need in order to make itself)."""

import subprocess
from pathlib import Path

from pipnet_core.training.config import Config

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"
RECIPE = CONFIGS / "pipnet_mbv2_68"


def steps() -> list[Path]:
    return sorted(RECIPE.glob("*.toml"))


def test_configs_hold_the_shipped_models_recipe_and_nothing_else():
    assert len(steps()) == 5
    assert sorted(CONFIGS.rglob("*.toml")) == steps(), "experiments belong in experiments/<name>/"


def test_each_step_starts_from_imagenet_weights_or_an_earlier_steps_run():
    made: list[Path] = []
    for number, path in enumerate(steps()):
        train = Config.load(path).train
        if number == 0:
            assert not train.init and Config.load(path).model.pretrained.endswith("mobilenet_v2-b0353104.pth"), path
        else:
            init = Path(train.init)
            assert init.parent in made and init.suffix == ".pt", f"{path}: init {init} is no earlier step's run"
        assert Path(train.out_dir) not in made, f"{path}: writes over an earlier step"
        made.append(Path(train.out_dir))


def test_make_model_trains_the_steps_in_order_and_exports_the_last_one():
    # What make would run (-n prints the commands, runs none), with every variable expanded.
    commands = subprocess.run(["make", "-n", "model"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    loop = next(line for line in commands.splitlines() if line.startswith("for step in"))
    assert loop.split(" in ", 1)[1].split(";", 1)[0].split() == [str(p.relative_to(ROOT)) for p in steps()]
    assert "pipnet train --config $step --resume" in loop
    last = Config.load(steps()[-1]).train.out_dir
    # The last step runs a fixed schedule and its last epoch is the model (5_upright.toml says why).
    assert f"pipnet export --checkpoint {last}/last.pt --out build/model/" in commands
    assert (
        f"pipnet quantize --model build/model/pipnet_mbv2_68.onnx --config {steps()[-1].relative_to(ROOT)}" in commands
    )


def test_the_steps_after_the_first_take_no_imagenet_weights():
    assert all(Config.load(path).model.pretrained == "" for path in steps()[1:])
