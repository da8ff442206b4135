"""package.xml as rosdep sees it: every key resolves against the rosdistro rosdep YAMLs (read from
``$FOENET_DATA/rosdistro``, the extract of ros/rosdistro in the shared data; skipped with the reason
where absent), build types are not keys, the companion computer does not pull GUI/bag tools or an apt
torch, and every ROS package the code imports is declared."""

from __future__ import annotations

import ast
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the distribution files are ~400 KB each
DEP_TAGS = ("depend", "build_depend", "buildtool_depend", "build_export_depend", "exec_depend", "test_depend", "doc_depend")
OPTIONAL = {"rviz2", "ros2bag", "rosbag2_storage_mcap", "cv_bridge", "sensor_msgs_py", "python3-matplotlib", "python3-rosbags-pip"}


def _deps() -> list[tuple[str, str, str | None]]:
    root = ET.parse(REPO / "package.xml").getroot()
    assert root.get("format") == "3"
    return [(el.tag, el.text.strip(), el.get("condition")) for tag in DEP_TAGS for el in root.findall(tag)]


@pytest.fixture(scope="module")
def rosdistro(shared_data):
    root = shared_data / "rosdistro"
    if not (root / "rosdep" / "base.yaml").is_file():
        pytest.skip(f"rosdistro rosdep YAMLs not in the shared data ({root})")
    rules = {}
    for name in ("base.yaml", "python.yaml"):
        rules.update(yaml.load((root / "rosdep" / name).read_text(), Loader=_LOADER))

    def packages(distro: str) -> set[str]:
        doc = yaml.load((root / distro / "distribution.yaml").read_text(), Loader=_LOADER)
        out: set[str] = set()
        for repo, entry in doc["repositories"].items():
            rel = entry.get("release") or {}
            if rel:
                out.update(rel.get("packages") or [repo])
        return out

    return rules, {"jazzy": packages("jazzy"), "humble": packages("humble")}


def _resolves_on_ubuntu(rule) -> bool:
    return isinstance(rule, dict) and ("ubuntu" in rule or "*" in rule)


def test_every_key_resolves_with_rosdep(rosdistro):
    rules, distros = rosdistro
    unresolved = []
    for tag, key, _cond in _deps():
        if key in rules:
            if not _resolves_on_ubuntu(rules[key]):
                unresolved.append(f"{key} (no Ubuntu rule)")
            continue
        for distro, pkgs in distros.items():
            if key not in pkgs:
                unresolved.append(f"{key} ({tag}) not released for {distro}")
    assert not unresolved, "rosdep cannot resolve: " + "; ".join(unresolved)


def test_package_xml_shape():
    deps = _deps()
    keys = {k for _, k, _ in deps}
    assert "ament_python" not in keys, "ament_python is a build type (<export><build_type>), not a rosdep key"
    root = ET.parse(REPO / "package.xml").getroot()
    assert root.find("export/build_type").text == "ament_python"
    assert not keys & {"python3-torch", "python3-torchvision", "python3-pymavlink"}, "torch from pip; pymavlink's key is -pip"
    for tag, key, cond in deps:
        if key in OPTIONAL:  # GUI/bag tools: only with FOENET_TOOLS=1, never pulled onto the companion computer
            assert tag == "exec_depend" and cond == "$FOENET_TOOLS == 1", (key, cond)
        else:
            assert cond is None, key


def _ros_imports() -> set[str]:
    """ROS packages the package code imports (``from pkg.msg import ...``, ``import pkg.srv``, launch files)."""
    found: set[str] = set()
    files = list((REPO / "foenet_ros").rglob("*.py")) + list((REPO / "launch").glob("*.py"))
    for f in files:
        for n in ast.walk(ast.parse(f.read_text())):
            mods = [n.module] if isinstance(n, ast.ImportFrom) and n.module else [a.name for a in getattr(n, "names", [])] \
                if isinstance(n, ast.Import) else []  # fmt: skip
            for m in mods:
                parts = m.split(".")
                if len(parts) >= 2 and parts[1] in ("msg", "srv"):
                    found.add(parts[0])
                elif parts[0] in ("rclpy", "launch", "launch_ros", "ament_index_python", "cv_bridge", "sensor_msgs_py"):
                    found.add(parts[0])
    return found - {"px4_msgs"}  # px4_msgs: built from source in the user's workspace (optional adapter)


def test_every_ros_import_is_declared():
    keys = {k for _, k, _ in _deps()}
    missing = _ros_imports() - keys
    assert not missing, f"imported but not in package.xml: {sorted(missing)}"


def test_setup_installs_launch_config_and_profile():
    src = (REPO / "setup.py").read_text()
    assert 'share("launch/*.py")' in src and 'share("config/*")' in src and 'share("rviz/*.rviz")' in src
    assert (REPO / "config" / "fastdds_large_frames.xml").is_file()
    ET.parse(REPO / "config" / "fastdds_large_frames.xml")  # well-formed XML


def _imports(path: Path) -> set[str]:
    """Absolute module names a file imports (relative imports resolved against foenet_ros)."""
    pkg = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    out: set[str] = set()
    for n in ast.walk(ast.parse(path.read_text())):
        if isinstance(n, ast.Import):
            out |= {a.name for a in n.names}
        elif isinstance(n, ast.ImportFrom):
            base = pkg.split(".")[: len(pkg.split(".")) - (n.level - 1)] if n.level else []
            mod = ".".join(base + ([n.module] if n.module else []))
            out.add(mod)
            out |= {f"{mod}.{a.name}" for a in n.names}
    return out


def test_layer_order_codec_and_bag_never_import_ros_and_the_node_never_the_registry():
    """docs/ARCHITECTURE.md: codec/ and bag/ sit above ros/; the node does not import the demo data registry."""
    for room in ("codec", "bag"):
        for f in (REPO / "foenet_ros" / room).rglob("*.py"):
            bad = {m for m in _imports(f) if m == "foenet_ros.ros" or m.startswith("foenet_ros.ros.") or m == "rclpy"
                   and f.name != "live.py"}
            assert not bad, f"{f.relative_to(REPO)} imports {sorted(bad)}"
    for f in (REPO / "foenet_ros" / "codec").rglob("*.py"):
        assert not {m for m in _imports(f) if m.split(".")[0] in ("rclpy", "torch")}, f
    for f in (REPO / "foenet_ros" / "ros").rglob("*.py"):
        assert "foenet_ros.maps" not in _imports(f), f"{f.relative_to(REPO)} imports the demo registry"
