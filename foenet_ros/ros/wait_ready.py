"""Wait until a foenet_node has loaded its index (its /diagnostics say so); exit 0, or 1 on timeout.

``replay.launch.py`` starts the bag player only after this exits 0, so no frame of the bag is
played into a node that cannot localise yet. /diagnostics are published on the steady clock,
so this works with ``use_sim_time`` before ``/clock`` exists.

    python -m foenet_ros.ros.wait_ready --node /uav1/foenet_node --timeout 300
"""

from __future__ import annotations

import argparse
import sys
import time


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--node", default="/foenet_node", help="fully qualified node name (default: /foenet_node)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait (default: 300)")
    args, ros_args = p.parse_known_args(argv)

    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray

    rclpy.init(args=ros_args or None)
    node = rclpy.create_node("foenet_wait_ready")
    want = args.node.rstrip("/") + ": localizer"
    state = {"ready": False, "message": "no diagnostics yet"}

    def on_diag(msg: DiagnosticArray) -> None:
        for st in msg.status:
            if st.name == want:
                state["message"] = st.message
                state["ready"] = any(kv.key == "index_tiles" for kv in st.values)

    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    deadline = time.monotonic() + args.timeout
    rc = 1
    try:
        while time.monotonic() < deadline and rclpy.ok():
            rclpy.spin_once(node, timeout_sec=0.2)
            if state["ready"]:
                rc = 0
                break
    except KeyboardInterrupt:
        rc = 130
    finally:
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    if rc == 0:
        print(f"{args.node}: index loaded")
    elif rc == 1:
        print(f"{args.node}: index not loaded within {args.timeout:.0f} s ({state['message']})", file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main())
