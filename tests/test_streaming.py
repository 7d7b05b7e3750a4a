"""Live results into other programs, each checked by a real receiver on 127.0.0.1: a python-osc
server in its own process (OSC and VMC), an LSL inlet that resolves the stream, WebSocket clients
(fast, slow and hostile), and the browser page in headless Chromium."""

import json
import socket
import subprocess
import sys
import textwrap
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pytest

from pipnet_core.base.errors import PipnetError
from pipnet_core.io.frames import VideoSource
from pipnet_core.io.sample_clip import cached_clip
from pipnet_core.pipeline.landmarker import Landmarker
from pipnet_core.stream import host_port
from pipnet_core.stream.lsl import channels
from pipnet_core.stream.runner import LiveRunner
from pipnet_core.stream.websocket import WebSocketSink

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(__file__).parent / "artifacts"  # ignored by git: screenshots to look at
FRAMES = 45


def free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def pipnet_live(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipnet_core", "live", str(cached_clip()), *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
    )


OSC_RECEIVER = textwrap.dedent("""
    import json, sys
    from pythonosc.dispatcher import Dispatcher
    from pythonosc.osc_server import BlockingOSCUDPServer
    out = open(sys.argv[2], "w")
    def record(address, *args):
        out.write(json.dumps([address, *args]) + "\\n"); out.flush()
    dispatcher = Dispatcher()
    dispatcher.set_default_handler(record)
    server = BlockingOSCUDPServer(("127.0.0.1", int(sys.argv[1])), dispatcher)
    print("ready", flush=True)
    server.timeout = 0.5
    while True:
        server.handle_request()
""")


@pytest.fixture
def osc_receiver(tmp_path):
    """A python-osc server in a process of its own; yields (port, the file it writes)."""
    port, log = free_port(socket.SOCK_DGRAM), tmp_path / "osc.jsonl"
    process = subprocess.Popen(
        [sys.executable, "-c", OSC_RECEIVER, str(port), str(log)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline().strip() == "ready"
    yield port, log
    process.kill()
    process.wait()


def received(log: Path, settle: float = 0.5) -> list[list]:
    time.sleep(settle)  # UDP: the last bundles are still on their way
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_osc_bundles_carry_every_frame_with_points_that_follow_the_face(osc_receiver):
    port, log = osc_receiver
    result = pipnet_live("--osc", f"127.0.0.1:{port}", "--frames", str(FRAMES))
    assert result.returncode == 0, result.stderr
    messages = received(log)
    frames = [m for m in messages if m[0] == "/pipnet/frame"]
    assert [m[1] for m in frames] == list(range(FRAMES))  # contiguous: a receiver that keeps up loses nothing
    capture, send = frames[-1][6], frames[-1][7]
    assert 0 <= send - capture < 1.0  # on the shared monotonic clock
    assert float(np.float32(capture)) != capture  # sent as a double: as OSC's float it would lose milliseconds
    points = [np.array(m[1:]).reshape(68, 2) for m in messages if m[0] == "/pipnet/face/0/points"]
    assert len(points) >= FRAMES - 2 and ((0 < points[0]) & (points[0] < 1)).all()  # normalised to the frame
    assert np.abs(points[-1] - points[0]).max() > 0.01  # the sample clip's face moves
    boxes = [m for m in messages if m[0] == "/pipnet/face/0/box"]
    assert boxes[0][1] == 1 and 0.4 < boxes[0][2] <= 1  # success, confidence
    pose = next(m for m in messages if m[0] == "/pipnet/face/0/pose")
    assert len(pose) == 7 and abs(pose[1]) < 45
    assert ["/pipnet/event", "found", 0] in messages


def test_vmc_sends_the_head_bone_and_blend_shapes_then_applies(osc_receiver):
    port, log = osc_receiver
    result = pipnet_live("--vmc", f"127.0.0.1:{port}", "--frames", "20")
    assert result.returncode == 0, result.stderr
    messages = received(log)
    heads = [m for m in messages if m[0] == "/VMC/Ext/Bone/Pos"]
    assert heads and heads[-1][1] == "Head" and heads[-1][2:5] == [0.0, 0.0, 0.0]  # the rotation is what moves
    quaternion = np.array(heads[-1][5:9])
    assert abs(np.linalg.norm(quaternion) - 1) < 1e-3
    assert [m[1] for m in messages if m[0] == "/pipnet/frame"] == list(range(20))  # capture and send times too
    blends = {m[1]: m[2] for m in messages if m[0] == "/VMC/Ext/Blend/Val"}
    assert set(blends) == {"Blink_L", "Blink_R", "A"} and all(0 <= v <= 1 for v in blends.values())
    applies = [i for i, m in enumerate(messages) if m[0] == "/VMC/Ext/Blend/Apply"]
    assert len(applies) >= 18 and messages[applies[-1] - 1][0] == "/VMC/Ext/Blend/Val"


@pytest.mark.parametrize(
    "pose, expected",
    [
        ((90, 0, 0), (0, -0.7071, 0, 0.7071)),
        ((0, 20, 0), (-0.1736, 0, 0, 0.9848)),
        ((0, 0, 30), (0, 0, 0.2588, 0.9659)),
    ],
)
def test_the_vmc_head_rotation_turns_the_avatar_as_a_mirror(pose, expected):
    # Unity's frame, x, y, z, w: our +yaw (towards the image's right) is the avatar's -y, +pitch (up)
    # its -x, +roll (clockwise on screen) its +z: the avatar moves as the person's mirror image.
    from pipnet_core.stream.osc import head_quaternion

    np.testing.assert_allclose(head_quaternion(*pose), expected, atol=1e-4)


def test_an_lsl_inlet_resolves_the_stream_reads_its_channels_and_gets_samples_on_lsl_s_clock():
    pylsl = pytest.importorskip("pylsl")
    name = f"pipnet-test-{time.monotonic_ns()}"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipnet_core",
            "live",
            str(cached_clip()),
            "--lsl",
            name,
            "--seconds",
            "8",
            "--max-faces",
            "2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        found = pylsl.resolve_byprop("name", name, timeout=15)
        assert found, "the outlet was not found"
        inlet = pylsl.StreamInlet(found[0])
        info = inlet.info(timeout=5)
        assert info.type() == "Landmarks" and info.nominal_srate() == pytest.approx(30, abs=1)
        labels, channel = [], info.desc().child("channels").child("channel")
        while not channel.empty():
            labels.append((channel.child_value("label"), channel.child_value("unit")))
            channel = channel.next_sibling()
        per_slot = channels()
        assert len(labels) == info.channel_count() == 2 + 2 * len(per_slot)  # frame, send time, two face slots
        assert labels[:4] == [
            ("frame", "count"),
            ("send_time", "seconds"),
            ("face0_present", "bool"),
            ("face0_id", "id"),
        ]
        assert ("face1_x67", "pixels") in labels
        samples = []
        while len(samples) < 40:
            sample, stamp = inlet.pull_sample(timeout=5)
            assert sample is not None
            samples.append((np.array(sample), stamp, pylsl.local_clock()))
        stamps = np.array([s[1] for s in samples])
        assert (np.diff(stamps) > 0).all() and np.median(np.diff(stamps)) == pytest.approx(1 / 30, abs=0.01)
        assert all(0 <= arrived - stamp < 0.5 for _, stamp, arrived in samples)  # stamped at capture, LSL's clock
        frames = [int(s[0][0]) for s in samples]
        assert frames == list(range(frames[0], frames[0] + len(frames)))  # none lost
        assert all(stamp <= sample[1] <= arrived for sample, stamp, arrived in samples)  # the send time, between
        last = samples[-1][0]
        assert last[2] == 1 and np.isnan(last[2 + len(per_slot)])  # slot 0 a face, slot 1 empty (NaN)
        markers = pylsl.resolve_byprop("name", f"{name}-events", timeout=5)
        assert markers and markers[0].type() == "Markers"
    finally:
        process.kill()
        process.communicate()


@pytest.fixture
def runner(model):
    """A landmarker on the sample clip, looping at its own 30 FPS, sinks added by each test."""
    with Landmarker(model) as landmarker:
        live = LiveRunner(landmarker)
        live.open(VideoSource(cached_clip(), loop=True))
        yield live
        live.close()


def run_for(runner: LiveRunner, seconds: float, during=lambda: None) -> float:
    """Frames processed per second over ``seconds`` (``during`` called after each)."""
    started, done = time.monotonic(), 0
    while time.monotonic() - started < seconds:
        captured = runner.next()
        if captured is not None:
            runner.process(captured)
            done += 1
            during()
    return done / (time.monotonic() - started)


@pytest.fixture
def clients():
    """Opens WebSocket clients to a sink (``clients(sink, query=..., origin=...)``), each closed at the end."""
    from websockets.sync.client import connect

    with ExitStack() as opened:

        def open_client(sink: WebSocketSink, query: str = "", **options):
            return opened.enter_context(
                connect(f"ws://127.0.0.1:{sink.port}/stream{query}", open_timeout=5, close_timeout=1, **options)
            )

        yield open_client


def read_all(client, into: list) -> None:
    """Every message until the connection closes."""
    from websockets.exceptions import ConnectionClosed

    try:
        for text in client:
            into.append(json.loads(text))
    except ConnectionClosed:
        pass


def test_websocket_clients_get_every_frame_and_slow_ones_cost_the_others_nothing(runner, clients):
    sink = WebSocketSink("127.0.0.1", 0)
    runner.sinks.append(sink)
    alone = run_for(runner, 3.0)
    sends, send = [], sink.send

    def timed_send(result):  # what the pipeline itself spends on the stream, per frame
        started = time.perf_counter()
        send(result)
        sends.append(time.perf_counter() - started)

    sink.send = timed_send
    fast = clients(sink)
    stalled = [clients(sink) for _ in range(3)]
    for client in stalled:  # they ask for the frame too, then never read: a blocking send would stall
        client.send(json.dumps({"request": "jpeg", "enable": True}))
    got: list[dict] = []
    reader = threading.Thread(target=read_all, args=(fast, got), daemon=True)
    reader.start()
    time.sleep(0.5)
    dropped = []
    with_slow = run_for(runner, 6.0, during=lambda: dropped.append(sink.dropped))
    assert with_slow >= 0.95 * alone, (alone, with_slow)
    # Queued, not sent, and the JPEGs encoded on the clients' threads: a sink that sent or encoded
    # on the pipeline's would take milliseconds a frame (a 640x480 JPEG alone is several).
    assert np.median(sends) < 0.001, np.median(sends)
    assert max(dropped) > 0  # the stalled clients' queues dropped their oldest frames
    deadline = time.monotonic() + 20
    while sink.clients > 1 and time.monotonic() < deadline:  # once full for STALL_SECONDS, they go
        run_for(runner, 0.5)
    assert sink.clients == 1  # the fast one stays
    frames = [m["frame"] for m in got]
    assert len(frames) > 100 and frames == list(range(frames[0], frames[0] + len(frames)))  # none lost
    last = got[-1]
    assert {"capture_time", "send_time", "processed_time", "lsl_time", "faces", "events"} <= last.keys()
    face = last["faces"][0]
    assert len(face["points"]) == 68 and len(face["point_confidence"]) == 68 and face["pose"] is not None
    assert 0 <= last["send_time"] - last["capture_time"] < 0.5
    sink.close()


def test_hostile_websocket_clients_are_refused_or_ignored_and_the_pipeline_goes_on(runner, caplog, clients):
    from websockets.exceptions import ConnectionClosed, InvalidStatus

    sink = WebSocketSink("127.0.0.1", 0, allowed_origins=("http://localhost:3000",), token="s3cret", max_clients=4)
    runner.sinks.append(sink)
    with pytest.raises(InvalidStatus, match="403"):
        clients(sink, query="?token=s3cret", origin="http://evil.example")
    with pytest.raises(InvalidStatus, match="401"):
        clients(sink)
    allowed = clients(sink, query="?token=s3cret", origin="http://localhost:3000")  # the control: let in
    allowed.send("hello?")  # not a request: ignored, logged once
    allowed.send(json.dumps({"request": "shell", "command": "rm -rf /"}))
    huge = clients(sink, query="?token=s3cret")
    with pytest.raises(ConnectionClosed):  # 10 MB: that connection is closed (on the send or the next read)
        huge.send("x" * 10_000_000)
        for _ in range(100):
            huge.recv(timeout=5)
    deadline = time.monotonic() + 5
    while sink.clients > 1 and time.monotonic() < deadline:  # the closed one's thread lets it go
        time.sleep(0.05)
    assert sink.clients == 1  # `allowed` alone, before the crowd comes
    alone = run_for(runner, 3.0)
    rates = []
    feeder = threading.Thread(target=lambda: rates.append(run_for(runner, 4.0)), daemon=True)
    feeder.start()  # the pipeline runs while the crowd comes
    crowd, refused = [], 0
    for _ in range(200):
        try:
            crowd.append(clients(sink, query="?token=s3cret"))
        except InvalidStatus as exc:
            refused += "503" in str(exc)
    feeder.join(10)
    assert len(crowd) <= 3 and refused >= 197  # 4 at most, one of them `allowed`
    assert rates[0] >= 0.9 * alone, (alone, rates)  # the pipeline went on at the source's rate
    assert json.loads(allowed.recv(timeout=5))["schema"] == "pipnet-live/1"
    assert sum("not a known request" in r.message for r in caplog.records) == 1 and sink.ignored == 2
    sink.close()


def test_stream_settings_that_cannot_work_are_one_line_errors(tmp_path):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        result = pipnet_live("--ws", str(busy.getsockname()[1]), "--frames", "5")
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert result.stderr.strip().endswith("cannot listen there (Address already in use)")
    finally:
        busy.close()
    result = pipnet_live("--osc", "no-such-host.invalid:9000", "--frames", "5")
    assert result.returncode == 2 and "no-such-host.invalid:9000: unreachable" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    with pytest.raises(PipnetError, match="give HOST:PORT or PORT"):
        host_port("127.0.0.1:99999")
    missing = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.modules['websockets'] = None; "
            "from pipnet_core.cli import main; "
            f"sys.exit(main(['live', {str(cached_clip())!r}, '--ws', '0']))",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert missing.returncode == 2 and "needs websockets: pip install 'pipnet-live[stream]'" in missing.stderr


def test_the_browser_page_draws_the_live_points_in_headless_chromium(runner, tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver")
    if not Path("/usr/bin/chromedriver").exists():
        pytest.skip("no Chromium here: apt-get install chromium chromium-driver (.ci/run does)")
    sink = WebSocketSink("127.0.0.1", 0)
    runner.sinks.append(sink)
    options = webdriver.ChromeOptions()
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'chrome'}",
        "--window-size=800,600",
    ):
        options.add_argument(flag)
    options.binary_location = "/usr/bin/chromium"
    service = webdriver.ChromeService(executable_path="/usr/bin/chromedriver")
    browser = webdriver.Chrome(options=options, service=service)
    stop = threading.Event()
    feeder = threading.Thread(target=lambda: runner.run(stop), daemon=True)
    feeder.start()
    try:
        browser.get(sink.url())
        drawn = []
        for _ in range(2):
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not browser.execute_script("return window.pipnet.drawn.length"):
                time.sleep(0.1)
            drawn.append(
                browser.execute_script("""
                const face = window.pipnet.drawn[0], canvas = document.getElementById('view');
                const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
                const inked = face.points.filter(([x, y]) => {
                    const i = 4 * (Math.round(y) * canvas.width + Math.round(x));
                    return pixels[i] + pixels[i + 1] + pixels[i + 2] > 200; });
                return {points: face.points, inked: inked.length, frame: window.pipnet.last.frame};""")
            )
            time.sleep(1.0)
        browser.find_element("id", "video").click()  # the frame under the points, for the picture in docs/
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not browser.execute_script("return !!window.pipnet.last.jpeg"):
            time.sleep(0.1)
        time.sleep(0.5)
        ARTIFACTS.mkdir(exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "live_view.png"))  # docs/live_view.png is a copy
    finally:
        stop.set()
        browser.quit()
        feeder.join(5)
        sink.close()
    first, second = (np.array(d["points"]) for d in drawn)
    assert all(d["inked"] >= 60 for d in drawn)  # the points are on the canvas, not only in a variable
    assert second.shape == (68, 2) and drawn[1]["frame"] > drawn[0]["frame"] + 15
    assert np.abs(second - first).mean() > 2  # they move with the clip's face


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM"])
def test_ctrl_c_or_a_service_stop_closes_every_stream(how):
    import signal

    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipnet_core",
            "live",
            str(cached_clip()),
            "--loop",
            "--ws",
            str(port),
            "--osc",
            f"127.0.0.1:{free_port(socket.SOCK_DGRAM)}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A suite started in the background inherits SIGINT ignored: give it back.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert process.stdout.readline().startswith(f"browser view: http://127.0.0.1:{port}/")
        from websockets.sync.client import connect

        with connect(f"ws://127.0.0.1:{port}/stream", open_timeout=5, close_timeout=1) as client:
            assert json.loads(client.recv(timeout=10))["schema"] == "pipnet-live/1"
            process.send_signal(getattr(signal, how))
            stdout, stderr = process.communicate(timeout=20)
    finally:
        process.kill()
    assert "Traceback" not in stderr
    if how == "SIGINT":
        assert process.returncode == 130 and stderr.strip() == "pipnet live: interrupted"
    else:  # a service manager's stop is a clean end, with the summary
        assert process.returncode == 0 and "frames processed; OSC" in stdout
    with socket.socket() as again:  # nothing listens there any more (the closed connection's TIME_WAIT aside)
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))
        again.listen()
