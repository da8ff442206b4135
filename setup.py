"""ament_python package definition; also installs with plain pip (`pip install -e .`)."""

from glob import glob
from pathlib import Path

from setuptools import find_packages, setup

package_name = "foenet_ros"


def share(pattern: str) -> list[str]:
    return sorted(p for p in glob(pattern, recursive=True) if Path(p).is_file())


def data_tree(folder: str) -> list[tuple[str, list[str]]]:
    """Install every file under ``folder`` at share/foenet_ros/<folder>/..., keeping sub-folders."""
    groups: dict[str, list[str]] = {}
    for f in share(f"{folder}/**/*"):
        groups.setdefault(str(Path("share", package_name, Path(f).parent)), []).append(f)
    return sorted(groups.items())


setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/launch", share("launch/*.py")),
        ("share/" + package_name + "/config", share("config/*")),
        ("share/" + package_name + "/rviz", share("rviz/*.rviz")),
        *data_tree("models"),
        *data_tree("maps"),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="foenet_ros developers",
    maintainer_email="dev@foenet.invalid",
    description="Absolute visual geo-localization for drones with FOENet, as a ROS 2 package.",
    license="Apache-2.0",
    python_requires=">=3.10",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            "foenet = foenet_ros.cli:main",
            "foenet_node = foenet_ros.ros.node:main",
        ],
    },
)
