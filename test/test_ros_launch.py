"""Launch files, parameters file and RViz config.

Where ``launch``/``launch_ros`` import (a full ROS 2 install with this package built), the node is
started from ``foenet.launch.py`` and must come up in the graph. Where they do not (the pip-wheel
ROS on CI), that test is skipped with the reason, and static checks (ast) verify the launch files'
structure and that every parameter they pass exists in ``config/foenet.yaml``, whose keys must be
exactly the parameters the node declares.
"""

from __future__ import annotations

import ast
import os
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
LAUNCH = REPO / "launch" / "foenet.launch.py"
REPLAY = REPO / "launch" / "replay.launch.py"
YAML = REPO / "config" / "foenet.yaml"
RVIZ = REPO / "rviz" / "foenet.rviz"
ROS_BUILTIN_PARAMS = {"use_sim_time"}


def _yaml_params() -> dict:
    doc = yaml.safe_load(YAML.read_text())
    assert list(doc) == ["/**/foenet_node"], "the parameters file must address the node in any namespace"
    flat: dict = {}

    def walk(d: dict, prefix: str = "") -> None:
        for k, v in d.items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}.")
            else:
                flat[prefix + k] = v

    walk(doc["/**/foenet_node"]["ros__parameters"])
    return flat


def _launch_importable() -> str | None:
    """None when launch + launch_ros import, else the reason."""
    try:
        from launch import LaunchDescription  # noqa: F401  (a bare `import launch` finds ./launch/)
        import launch_ros.actions  # noqa: F401
    except ImportError as exc:
        return f"launch/launch_ros are not importable here ({exc}); the static checks below cover the launch files"
    return None


_RUN_LAUNCH = """
import sys
import launch
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
args = [tuple(a.split(":=", 1)) for a in sys.argv[2:]]
ls = launch.LaunchService(argv=sys.argv[2:])
ls.include_launch_description(launch.LaunchDescription(
    [IncludeLaunchDescription(PythonLaunchDescriptionSource(sys.argv[1]), launch_arguments=args)]))
sys.exit(ls.run())
"""


@pytest.fixture
def ament_prefix(tmp_path):
    """A minimal install prefix: the ament index entry and lib/foenet_ros/foenet_node (runs this checkout)."""
    import sys

    prefix = tmp_path / "install"
    (prefix / "share" / "ament_index" / "resource_index" / "packages").mkdir(parents=True)
    (prefix / "share" / "ament_index" / "resource_index" / "packages" / "foenet_ros").write_text("")
    share = prefix / "share" / "foenet_ros"
    share.mkdir()
    for d in ("config", "launch", "rviz"):
        (share / d).symlink_to(REPO / d)
    exe = prefix / "lib" / "foenet_ros" / "foenet_node"
    exe.parent.mkdir(parents=True)
    exe.write_text(f"#!/bin/sh\nexec {sys.executable} -m foenet_ros.ros.node \"$@\"\n")
    exe.chmod(0o755)
    return prefix


def _launch(launch_file: Path, args: list[str], prefix: Path, domain: str):
    import subprocess
    import sys

    env = dict(os.environ, AMENT_PREFIX_PATH=str(prefix), ROS_DOMAIN_ID=domain,
               PYTHONPATH=os.pathsep.join([str(REPO)] + [p for p in sys.path if p]))
    return subprocess.Popen([sys.executable, "-c", _RUN_LAUNCH, str(launch_file), *args], env=env, cwd=str(REPO),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip


def _stop_twice(proc) -> tuple[int, str]:
    """Ctrl-C as a terminal under ros2 launch delivers it: two SIGINTs."""
    import signal
    import subprocess

    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return proc.returncode, out


def test_foenet_launch_under_the_real_launch_library(ament_prefix):
    """The launch file under the real launch/launch_ros (a regular ROS 2 install, or the ros2/launch
    sources on PYTHONPATH): the node comes up in its namespace, two SIGINTs end everything cleanly."""
    reason = _launch_importable()
    if reason:
        pytest.skip(reason)
    import rclpy

    domain = str(101 + os.getpid() % 100)
    os.environ["ROS_DOMAIN_ID"] = domain
    proc = _launch(LAUNCH, ["namespace:=launch_test", "index_dir:=/nonexistent/index"], ament_prefix, domain)
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    names: list = []
    try:
        probe = rclpy.create_node("launch_probe", context=ctx)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            names = probe.get_node_names_and_namespaces()
            if ("foenet_node", "/launch_test") in names:
                break
            time.sleep(0.5)
        probe.destroy_node()
    finally:
        rclpy.shutdown(context=ctx)
        rc, out = _stop_twice(proc)
    assert ("foenet_node", "/launch_test") in names, f"node not in the graph: {names}\n{out[-3000:]}"
    assert "fastdds_large_frames.xml" not in out or "Traceback" not in out
    assert "Traceback" not in out and "KeyboardInterrupt" not in out, out[-3000:]
    assert rc == 0, out[-3000:]


def test_replay_launch_under_the_real_launch_library(ament_prefix, tmp_path):
    """replay.launch.py on a machine without rviz2 and rosbag2, in a namespace: the bag plays only
    once the index is loaded, the fixes come out in the namespace, a double Ctrl-C exits cleanly."""
    reason = _launch_importable()
    if reason:
        pytest.skip(reason)
    import rclpy
    from sensor_msgs.msg import NavSatFix

    from foenet_ros.bag import SimConfig, simulate_flight
    from foenet_ros.bag.trajectory import MotionConfig
    from foenet_ros.geo import synthetic_map
    from foenet_ros.index import IndexConfig, build_index
    from foenet_ros.model import Encoder, load_default_model

    raster = synthetic_map(size_m=(360.0, 270.0), gsd_m=0.4, seed=11)
    build_index(raster, Encoder(load_default_model(), device="cpu", batch_size=16), tmp_path / "index",
                IndexConfig(scales_m=(90.0,)), progress=False)
    simulate_flight(raster, tmp_path / "flight", SimConfig(n_frames=4, rate_hz=1.0, width=480, height=360,
                    motion=MotionConfig(alt_m=90.0, speed_mps=10.0)), progress=False)  # fmt: skip
    domain = str(101 + (os.getpid() + 7) % 100)
    os.environ["ROS_DOMAIN_ID"] = domain
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    fixes: list = []
    listener = rclpy.create_node("replay_probe", context=ctx)
    listener.create_subscription(NavSatFix, "/uav9/foenet_node/fix", fixes.append, 50)
    proc = _launch(REPLAY, [f"bag:={tmp_path / 'flight'}", f"index_dir:={tmp_path / 'index'}", "namespace:=uav9",
                            "rate:=1.0"], ament_prefix, domain)  # fmt: skip
    from rclpy.executors import SingleThreadedExecutor

    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(listener)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(fixes) < 4 and proc.poll() is None:
            executor.spin_once(timeout_sec=0.2)
    finally:
        executor.shutdown()
        listener.destroy_node()
        rclpy.shutdown(context=ctx)
        rc, out = _stop_twice(proc)
    assert "has its index: playing" in out, out[-3000:]
    assert len(fixes) >= 3, f"{len(fixes)} fixes\n{out[-3000:]}"
    assert all(f.header.stamp.sec > 0 for f in fixes)
    assert "rviz2" not in out or "not installed" not in out  # rviz: auto skips quietly without rviz2
    assert "Traceback" not in out, out[-3000:]
    assert rc == 0, out[-3000:]


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    out = []
    for n in ast.walk(tree):
        if isinstance(n, ast.Call):
            f = n.func
            if (isinstance(f, ast.Name) and f.id == name) or (isinstance(f, ast.Attribute) and f.attr == name):
                out.append(n)
    return out


def _kw(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _declared_args(tree: ast.AST) -> set[str]:
    return {c.args[0].value for c in _calls(tree, "DeclareLaunchArgument") if isinstance(c.args[0], ast.Constant)}


def test_foenet_launch_structure_and_parameters_exist():
    tree = ast.parse(LAUNCH.read_text())
    funcs = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert "generate_launch_description" in funcs
    # launch imports live in the launch file only, never in the package
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in [ast.alias(n.module or "")]}
    assert {"launch", "launch_ros"} <= imported
    assert {"params_file", "namespace", "use_sim_time", "image_topic", "camera_info_topic"} <= _declared_args(tree)
    nodes = [c for c in _calls(tree, "Node")]
    assert len(nodes) == 1
    node = nodes[0]
    consts = {t.id: n.value.value for n in tree.body if isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant)
              for t in n.targets if isinstance(t, ast.Name)}  # fmt: skip

    def value(expr: ast.expr) -> object:
        return consts[expr.id] if isinstance(expr, ast.Name) else ast.literal_eval(expr)

    assert value(_kw(node, "package")) == "foenet_ros"
    assert value(_kw(node, "executable")) == "foenet_node"
    assert value(_kw(node, "name")) == "foenet_node"
    assert _kw(node, "parameters") is not None and _kw(node, "remappings") is not None and _kw(node, "namespace") is not None
    # every parameter name the launch file passes (dict literal keys and overrides["..."] = ...)
    passed: set[str] = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Dict):
            passed |= {k.value for k in n.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}
        if isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Subscript):
            sl = n.targets[0].slice
            if isinstance(sl, ast.Constant) and isinstance(sl.value, str):
                passed.add(sl.value)
    assert passed >= {"use_sim_time", "index_dir"}
    missing = passed - set(_yaml_params())
    assert not missing, f"launch file passes parameters that config/foenet.yaml lacks: {sorted(missing)}"
    # remapped names are the ones the node uses
    remap_from = {e.elts[0].value for e in ast.walk(tree) if isinstance(e, ast.Tuple) and len(e.elts) == 2
                  and isinstance(e.elts[0], ast.Constant) and isinstance(e.elts[0].value, str)}  # fmt: skip
    assert {"camera/image_raw", "camera/camera_info", "~/pose", "~/fix"} <= remap_from
    defaults = _yaml_params()
    assert defaults["image_topic"] == "camera/image_raw" and defaults["camera_info_topic"] == "camera/camera_info"


def test_replay_launch_structure():
    tree = ast.parse(REPLAY.read_text())
    assert {"bag", "rate", "params_file", "rviz", "player", "namespace", "wait_timeout_s"} <= _declared_args(tree)
    src = REPLAY.read_text()
    # the bag plays only after the waiter saw the index loaded; rviz2 only where it exists
    assert "OnProcessExit" in src and "foenet_ros.ros.wait_ready" in src and "rviz_available()" in src
    (inc,) = _calls(tree, "IncludeLaunchDescription")
    src_inc = ast.unparse(inc)
    assert "foenet.launch.py" in src_inc and "'use_sim_time': 'true'" in src_inc
    (rviz,) = _calls(tree, "Node")
    assert ast.literal_eval(_kw(rviz, "executable")) == "rviz2"
    assert "'use_sim_time': True" in ast.unparse(rviz) and "-d" in ast.unparse(rviz) and _kw(rviz, "namespace") is not None


def test_yaml_lists_exactly_the_declared_parameters_with_comments():
    pytest.importorskip("rclpy", reason="rclpy not installed")
    from foenet_ros.ros.params import all_param_specs, settings_from_values

    specs = {p.name: p for p in all_param_specs()}
    params = _yaml_params()
    assert set(params) - ROS_BUILTIN_PARAMS == set(specs), (
        "config/foenet.yaml and the node's parameters drifted apart (a new LocalizerConfig field?): "
        "regenerate with `python -m foenet_ros.ros.params > config/foenet.yaml`"
    )
    # the YAML values are valid settings (NaN origin = map centre)
    settings_from_values({k: v for k, v in params.items() if k not in ROS_BUILTIN_PARAMS})
    for name, spec in specs.items():  # floats keep a decimal point: ROS parameters are typed
        assert type(params[name]) is type(spec.default), f"{name}: {params[name]!r} is not a {type(spec.default).__name__}"
    # every parameter line ("key: value") is directly preceded by a comment
    lines = YAML.read_text().splitlines()
    n_checked = 0
    for i, line in enumerate(lines):
        s = line.strip()
        if s and not s.startswith("#") and not s.endswith(":"):
            assert lines[i - 1].strip().startswith("#"), f"config/foenet.yaml line {i + 1} has no comment: {s}"
            n_checked += 1
    assert n_checked == len(params)


def test_rviz_config_shows_the_node_outputs():
    doc = yaml.safe_load(RVIZ.read_text())
    vm = doc["Visualization Manager"]
    assert vm["Global Options"]["Fixed Frame"] == "map"
    topics = {d["Class"].split("/")[-1]: d.get("Topic", {}).get("Value") for d in vm["Displays"]}
    topic_list = [d.get("Topic", {}).get("Value") for d in vm["Displays"]]
    # relative names: they resolve in RViz's namespace, which replay.launch.py sets to the node's
    assert topics["PoseWithCovariance"] == "foenet_node/pose"
    assert topics["Path"] == "foenet_node/path"
    assert topics["MarkerArray"] == "foenet_node/candidates"
    assert topics["PointCloud2"] == "foenet_node/map_tiles"
    assert "foenet_node/debug_image" in topic_list and "camera/image_raw" in topic_list
    assert not any(t.startswith("/") for t in topic_list if t), topic_list


# ---------------------------------------------------------------------------------------- stubbed launch
class _Recorder:
    """Stands in for every launch / launch_ros class: remembers its arguments."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class _LaunchConfiguration(_Recorder):
    def perform(self, context):
        return context[self.args[0]]


def _load_with_stub_launch(monkeypatch, path: Path):
    """Import a launch file with minimal stand-ins for launch/launch_ros (not installed here)."""
    import importlib.util
    import types

    mods = {}
    for name in ("launch", "launch.actions", "launch.substitutions", "launch.conditions", "launch.event_handlers",
                 "launch.launch_description_sources", "launch_ros", "launch_ros.actions"):  # fmt: skip
        mods[name] = types.ModuleType(name)
        monkeypatch.setitem(__import__("sys").modules, name, mods[name])
    mods["launch"].LaunchDescription = _Recorder
    for cls in ("DeclareLaunchArgument", "OpaqueFunction", "ExecuteProcess", "IncludeLaunchDescription", "LogInfo",
                "SetEnvironmentVariable", "RegisterEventHandler"):
        setattr(mods["launch.actions"], cls, type(cls, (_Recorder,), {}))
    mods["launch.event_handlers"].OnProcessExit = _Recorder
    mods["launch.substitutions"].LaunchConfiguration = _LaunchConfiguration
    mods["launch.conditions"].IfCondition = _Recorder
    mods["launch.launch_description_sources"].PythonLaunchDescriptionSource = _Recorder
    mods["launch_ros.actions"].Node = type("Node", (_Recorder,), {})
    spec = importlib.util.spec_from_file_location(path.stem.replace(".", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_foenet_launch_builds_the_node_with_stub_launch(monkeypatch):
    mod = _load_with_stub_launch(monkeypatch, LAUNCH)
    ld = mod.generate_launch_description()
    actions = ld.args[0]
    defaults = {a.args[0]: a.kwargs.get("default_value") for a in actions if type(a).__name__ == "DeclareLaunchArgument"}
    (opaque,) = [a for a in actions if type(a).__name__ == "OpaqueFunction"]
    assert Path(defaults["params_file"]).name == "foenet.yaml" and Path(defaults["params_file"]).is_file()

    ctx = dict(defaults)
    monkeypatch.delenv("FASTRTPS_DEFAULT_PROFILES_FILE", raising=False)
    monkeypatch.delenv("FASTDDS_DEFAULT_PROFILES_FILE", raising=False)
    *env, node = opaque.kwargs["function"](ctx)
    assert node.kwargs["parameters"][1] == {"use_sim_time": False}  # no empty index_dir override
    # the shipped Fast DDS profile is set for the node (and everything launched after it)
    assert {e.args[0] for e in env} == {"FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE"}
    assert all(Path(e.args[1]).name == "fastdds_large_frames.xml" and Path(e.args[1]).is_file() for e in env)
    monkeypatch.setenv("FASTRTPS_DEFAULT_PROFILES_FILE", "/etc/my_profile.xml")  # the user's own: kept
    *env, node = opaque.kwargs["function"](ctx)
    assert [type(e).__name__ for e in env] == ["LogInfo"]
    ctx.update(index_dir="/data/index", use_sim_time="true", namespace="uav1", image_topic="/cam0/image",
               pose_topic="/mavros/vision_pose/pose_cov", fix_topic="/gps/fix", fastdds_profile="")  # fmt: skip
    (node,) = opaque.kwargs["function"](ctx)
    kw = node.kwargs
    assert kw["namespace"] == "uav1" and kw["executable"] == "foenet_node"
    assert kw["parameters"] == [defaults["params_file"], {"use_sim_time": True, "index_dir": "/data/index"}]
    remaps = dict(kw["remappings"])
    assert remaps["camera/image_raw"] == "/cam0/image" and remaps["camera/image_raw/compressed"] == "/cam0/image/compressed"
    assert remaps["~/pose"] == "/mavros/vision_pose/pose_cov" and remaps["~/fix"] == "/gps/fix"


def test_replay_launch_builds_with_stub_launch(monkeypatch):
    mod = _load_with_stub_launch(monkeypatch, REPLAY)
    actions = mod.generate_launch_description().args[0]
    defaults = {a.args[0]: a.kwargs.get("default_value") for a in actions if type(a).__name__ == "DeclareLaunchArgument"}
    (opaque,) = [a for a in actions if type(a).__name__ == "OpaqueFunction"]
    ctx = dict(defaults, bag="/data/flight", namespace="uav3")
    monkeypatch.setattr(mod, "rviz_available", lambda: False)  # a companion computer without rviz2
    built = opaque.kwargs["function"](ctx)
    kinds = [type(a).__name__ for a in built]
    assert kinds == ["IncludeLaunchDescription", "ExecuteProcess", "RegisterEventHandler"]  # no rviz2 node, no failure
    inc, waiter, handler = built
    assert Path(inc.args[0].args[0]).resolve() == LAUNCH.resolve()
    assert dict(inc.kwargs["launch_arguments"])["use_sim_time"] == "true"
    assert waiter.kwargs["cmd"][1:5] == ["-m", "foenet_ros.ros.wait_ready", "--node", "/uav3/foenet_node"]
    on_exit = handler.args[0].kwargs["on_exit"]
    ok = on_exit(type("E", (), {"returncode": 0})(), None)
    assert type(ok[1]).__name__ == "ExecuteProcess" and "play" in ok[1].kwargs["cmd"]
    assert all(type(a).__name__ == "LogInfo" for a in on_exit(type("E", (), {"returncode": 1})(), None))
    # rviz:=true without rviz2: a log line instead of a failing process
    built = opaque.kwargs["function"](dict(ctx, rviz="true"))
    assert type(built[-1]).__name__ == "LogInfo" and "not installed" in built[-1].kwargs["msg"]
    monkeypatch.setattr(mod, "rviz_available", lambda: True)
    rviz = opaque.kwargs["function"](ctx)[-1]
    assert rviz.kwargs["executable"] == "rviz2" and rviz.kwargs["namespace"] == "uav3"
    # the player: rosbag2's where installed, ours otherwise
    assert mod.player_cmd("ros2", "b", "1.0")[:3] == ["ros2", "bag", "play"]
    assert mod.player_cmd("foenet", "b", "0.5")[1:4] == ["-m", "foenet_ros.cli", "play"]


def test_the_node_has_a_frame_budget_by_default_and_the_library_none():
    """A live node must not hold up its frames for a 15 s cold start: its default search budget is
    1500 ms; the library's (evaluation, replays) is 0, so that results do not depend on the machine."""
    from foenet_ros.localize import LocalizerConfig
    from foenet_ros.ros.params import settings_from_values

    assert settings_from_values({}).localizer.frame_budget_ms == 1500.0
    assert settings_from_values({"localizer.frame_budget_ms": 0.0}).localizer.frame_budget_ms == 0.0
    assert LocalizerConfig().frame_budget_ms == 0.0
    with pytest.raises(Exception, match="frame_budget_ms"):
        settings_from_values({"localizer.frame_budget_ms": -5.0})


def test_every_knob_documented_with_an_off_value_accepts_it_as_a_parameter():
    """A LocalizerConfig field documented "(0 = off)" / "(0 = none)" / "(0 = only ...)" must accept 0 as
    a node parameter: rclpy refuses a value outside the descriptor's range at start (keypoint_screen
    and keypoint_hint_min_inliers once had a range from 1, so the documented way to turn them off
    stopped the node)."""
    import re

    from foenet_ros.localize.config import LocalizerConfig
    from foenet_ros.ros.params import LOCALIZER_PREFIX, all_param_specs

    doc = LocalizerConfig.__doc__ or ""
    # each field's whole entry: "name: text" and its more-indented continuation lines
    entries = dict(re.findall(r"^ {8}(\w+): (.*(?:\n {12}.*)*)", doc, flags=re.M))
    zero_means = [name for name, text in entries.items() if re.search(r"\b0 = (off|none|only)", " ".join(text.split()))]
    assert {"keypoint_screen", "keypoint_hint_min_inliers", "fine_polish_cells", "frame_budget_ms", "global_every"} <= set(zero_means)
    specs = {s.name: s for s in all_param_specs()}
    for name in zero_means:
        spec = specs[LOCALIZER_PREFIX + name]
        assert spec.range is not None and spec.range[0] <= 0 <= spec.range[1], (name, spec.range)
