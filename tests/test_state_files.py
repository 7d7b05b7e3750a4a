"""Files a run reads back from a folder others may write to (annotate's NAME.progress, the
cluster's chunk pieces, training checkpoints): a planted file is refused in one line without
running anything it carries."""

import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fuzz_corpus import encode_video

from pipnet_core.base.crop import CropBox
from pipnet_core.base.errors import PipnetError
from pipnet_core.export.chunks import Chunk, read_piece
from pipnet_core.io.frames import ImageSource
from pipnet_core.io.state_codec import decode_state, encode_state, from_plain, to_plain
from pipnet_core.pipeline.landmarker import Landmarker
from pipnet_core.pipeline.tracking import TRACKER_STATE, Track, Tracker

ROOT = Path(__file__).resolve().parent.parent


class Payload:
    """What an attacker pickles: unpickling it runs a shell command that leaves a marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def pipnet(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipnet_core", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        timeout=300,
    )


def test_the_payload_does_run_when_unpickled(tmp_path):
    # The control: the planted files below would run code if anything unpickled them.
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.exists()


@pytest.fixture
def annotated(tmp_path) -> tuple[Path, Path]:
    """A clip annotated to the end, so that --resume reads its progress file."""
    clip = tmp_path / "clip.avi"
    clip.write_bytes(encode_video("avi", frames=8))
    result = pipnet("annotate", str(clip), "--out", "out", "--smooth", "none", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return clip, tmp_path / "out"


def test_a_planted_pickle_progress_file_is_refused_without_running(annotated, tmp_path):
    clip, out = annotated
    marker = tmp_path / "ran"
    (out / "clip.progress").write_bytes(
        pickle.dumps({"version": "pipnet-live 0.1.0, progress 2", "states": {0: Payload(marker)}, "complete_at": None})
    )
    result = pipnet("annotate", str(clip), "--out", "out", "--smooth", "none", "--resume", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert not marker.exists()
    problem = result.stderr.splitlines()[0]
    assert re.fullmatch(
        r"pipnet annotate: error: .*clip\.progress: written by an older pipnet-live in a format that "
        r"can run code \(pickle\), which this version refuses to read: delete it, or run without "
        r"--resume",
        problem,
    )


def test_a_progress_file_of_another_input_or_of_another_program_is_refused(annotated, tmp_path):
    clip, out = annotated
    other = tmp_path / "other.avi"
    other.write_bytes(encode_video("avi", frames=9))
    assert pipnet("annotate", str(other), "--out", "out", "--smooth", "none", cwd=tmp_path).returncode == 0
    # The tables of clip go on, but the progress beside them is other's.
    (out / "clip.progress").write_bytes((out / "other.progress").read_bytes())
    result = pipnet("annotate", str(clip), "--out", "out", "--smooth", "none", "--resume", cwd=tmp_path)
    assert result.returncode == 2
    assert "clip.progress: cannot resume: made with source_name 'other.avi', this run has 'clip.avi'" in result.stderr
    (out / "clip.progress").write_bytes(b'{"format": "something else"}')
    result = pipnet("annotate", str(clip), "--out", "out", "--smooth", "none", "--resume", cwd=tmp_path)
    assert result.returncode == 2 and "clip.progress: not a state file of pipnet-live" in result.stderr
    os.remove(out / "clip.progress")  # the control: without it the clip is complete and resumes cleanly
    assert pipnet("annotate", str(clip), "--out", "out", "--smooth", "none", "--resume", cwd=tmp_path).returncode == 0


def test_a_crafted_progress_file_that_passes_the_settings_check_is_a_one_line_error(annotated, tmp_path, model):
    """The planter can copy the settings from the tables beside it: what the states hold is checked
    too (a field of the wrong kind, a class not allowed, nesting deep enough to break a parser)."""
    clip, out = annotated
    progress = out / "clip.progress"
    settings = decode_state(progress.read_bytes(), "annotate progress", "x")["settings"]
    with Landmarker(model) as landmarker:
        frame = ImageSource(ROOT / "assets" / "face_photo.png").read()
        landmarker.process(frame.image, 0.0)
        state = landmarker.video_state()
    assert state["fields"]["tracks"], "the control: a state with a track to tamper with"
    crop = state["fields"]["tracks"][0]["fields"]
    tampered = {**crop, "crop": "not a crop"}
    cases = {
        "a field of the wrong kind": {
            **state,
            "fields": {**state["fields"], "tracks": [{"$object": "Track", "fields": tampered}]},
        },
        "a class not allowed": {"$object": "Popen", "fields": {}},
    }
    for why, bad in cases.items():
        progress.write_bytes(
            encode_state("annotate progress", {"settings": settings, "states": {0: bad}, "complete_at": None})
        )
        result = pipnet("annotate", str(clip), "--out", "out", "--smooth", "none", "--resume", cwd=tmp_path)
        assert result.returncode == 2 and "Traceback" not in result.stderr, (why, result.stderr)
        assert "the saved video state is not a tracker of this version" in result.stderr, why
    progress.write_bytes(b'{"format": "pipnet-live state", "document": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    result = pipnet("annotate", str(clip), "--out", "out", "--smooth", "none", "--resume", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr and "clip.progress: " in result.stderr


def test_a_planted_chunk_piece_is_refused_without_running(tmp_path):
    marker = tmp_path / "ran"
    piece = tmp_path / "clip.chunks" / "00000.chunk"
    piece.parent.mkdir()
    piece.write_bytes(pickle.dumps({"version": "x", "frames": [Payload(marker)]}))
    with pytest.raises(
        PipnetError, match=r"00000.chunk: written by an older pipnet-live in a format that can run code"
    ):
        read_piece(piece, None, Chunk(0, 0, 10))
    assert not marker.exists()


def test_a_state_names_only_the_classes_its_reader_allows():
    tracker = Tracker(1)
    tracker.tracks.append(Track(3, CropBox(40.0, 50.0, 60.0), 0.9))
    document = decode_state(encode_state("video", to_plain(tracker, TRACKER_STATE)), "video", "x")
    assert from_plain(document, TRACKER_STATE).tracks[0].id == 3
    # A state that names a class its reader does not list (here os.system's module would be the
    # attacker's next step) is refused, not looked up.
    document["fields"]["tracks"][0]["$object"] = "Popen"
    with pytest.raises(ValueError, match="a class this state may not hold: 'Popen'"):
        from_plain(document, TRACKER_STATE)
    with pytest.raises(PipnetError, match="holds a 'video' state, not a 'cluster chunk' one"):
        decode_state(encode_state("video", {}), "cluster chunk", "x")
    arrays = {"points": np.arange(6, dtype=np.float32).reshape(3, 2), "score": np.float32(0.25), "exact": 0.1 + 0.2}
    back = decode_state(encode_state("video", arrays), "video", "x")
    assert back["points"].dtype == np.float32 and np.array_equal(back["points"], arrays["points"])
    assert back["score"] == np.float32(0.25) and back["exact"] == 0.1 + 0.2


def test_a_planted_checkpoint_is_refused_without_running(tmp_path):
    torch = pytest.importorskip("torch")
    from pipnet_core.training.torch_runner import load_checkpoint

    marker = tmp_path / "ran"
    planted = tmp_path / "model.pt"
    torch.save({"model": {}, "config": {}, "info": Payload(marker)}, planted)
    with pytest.raises(PipnetError, match=r"model.pt: refused: holds more than weights and plain values"):
        load_checkpoint(planted)
    assert not marker.exists()
    result = pipnet("eval", "--model", str(planted), "--data", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 2 and not marker.exists() and "Traceback" not in result.stderr, result.stderr


def test_no_reader_of_user_files_unpickles():
    """pickle.load(s) runs a file's code, and so do torch's loaders unless told weights_only=True
    (older torch releases default to False): none may come back on any path that reads a user's
    or a shared folder's file."""
    found = []
    for folder in ("pipnet_core", "app", "tools"):
        for path in (ROOT / folder).rglob("*.py"):
            for number, line in enumerate(path.read_text().splitlines(), start=1):
                unpickles = re.search(r"pickle\.loads?\(|allow_pickle\s*=\s*True", line)
                torch_load = re.search(r"torch\.load\(|load_state_dict_from_url\(", line)
                if unpickles or torch_load and "weights_only=True" not in line:
                    found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, found


def test_saved_video_states_keep_the_class_names_they_were_written_with():
    """The live smoother's motion filter was renamed (MotionTracker -> AlphaBetaFilter): a video
    state saved before the rename names the old class, and still reads."""
    from pipnet_core.pipeline.smoothing import AlphaBetaFilter

    motion = AlphaBetaFilter(0.5)
    motion(np.array([1.0, 2.0]), 0.0)
    plain = to_plain(motion, TRACKER_STATE)
    assert plain["$object"] == "MotionTracker"
    back = from_plain(decode_state(encode_state("video state", plain), "video state", "test"), TRACKER_STATE)
    assert type(back) is AlphaBetaFilter and np.array_equal(back(np.array([1.0, 2.0]), 1 / 30), [1.0, 2.0])
