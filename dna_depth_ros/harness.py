"""Drive ``depth_node`` in a real rclpy graph: publish camera frames, collect the node's outputs by stamp, time them.

One harness for every caller that runs the node end to end (the node tests, ``benchmarks/node_latency.py`` and
the bag demo, ``scripts/demo/demo_bag.py``):

- :class:`Graph`: one rclpy context with a spinning executor and a tester node. It starts the node in-process
  (:meth:`Graph.start_node`), subscribes to its outputs and keeps what arrives by stamp, with the arrival time
  (:meth:`Graph.collect`, :meth:`Graph.messages`, :meth:`Graph.completed`), and waits for discovery and answers.
- :class:`Camera`: publishers of ``image`` (or ``image/compressed``) and ``camera_info``; :meth:`Camera.send`
  publishes one frame with one header on both and records when the image went out.
- :class:`NodeProcess`: the ``depth_node`` executable as a separate process with a loopback-only environment.

DDS never leaves the machine: :class:`Graph` sets ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` before rclpy starts
and :func:`loopback_env` gives child processes the same setting and the graph's domain id. Run the whole thing
inside a network namespace that has only ``lo`` (``unshare -n``) for a graph with no network at all.

Stamps are keyed as ``(sec, nanosec)``; :func:`stamp_key` accepts a message with a header, a Header, a Time,
integer nanoseconds or such a pair.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Iterable

import rclpy
from builtin_interfaces.msg import Time
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

from dna_depth_ros import conversions as conv
from dna_depth_ros.depth_node import DepthNode
from dna_depth_ros import outputs as node_outputs

__all__ = [
    "OUTPUT_TYPES",
    "DEFAULT_OUTPUTS",
    "Camera",
    "Graph",
    "NodeProcess",
    "confine_to_loopback",
    "loopback_env",
    "make_header",
    "node_command",
    "process_memory",
    "stamp_key",
]

# The node's output topics (relative to its namespace) and their message types.
OUTPUT_TYPES: dict[str, type] = {node_outputs.OUTPUT_TOPICS[name]: node_outputs.OUTPUT_TYPES[name]
                                 for name in node_outputs.OUTPUT_TOPICS}
# The outputs a default-configured node publishes for a frame with intrinsics.
DEFAULT_OUTPUTS = ("depth/image", "depth/camera_info", "points")
DEFAULT_TIMEOUT = 30.0


# ----------------------------------------------------------------------------------------------------------------
# Loopback-only DDS and stamps
# ----------------------------------------------------------------------------------------------------------------
def confine_to_loopback(domain_id: int | None = None) -> None:
    """Confine this process's DDS to loopback (and set its domain id) before rclpy starts a context."""
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    if domain_id is not None:
        os.environ["ROS_DOMAIN_ID"] = str(int(domain_id))


def loopback_env(domain_id: int | None = None, base: dict | None = None) -> dict:
    """The environment for a child process in the same loopback-only graph: ``base`` (default: this process's)
    with ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``, ``ROS_DOMAIN_ID`` (when given) and unbuffered output."""
    env = dict(os.environ if base is None else base)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    if domain_id is not None:
        env["ROS_DOMAIN_ID"] = str(int(domain_id))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def stamp_key(stamp: Any) -> tuple[int, int]:
    """``(sec, nanosec)`` of a message with a header, a Header, a Time, integer nanoseconds or a pair."""
    if hasattr(stamp, "header"):
        stamp = stamp.header
    if hasattr(stamp, "stamp"):
        stamp = stamp.stamp
    if hasattr(stamp, "sec") and hasattr(stamp, "nanosec"):
        return int(stamp.sec), int(stamp.nanosec)
    if isinstance(stamp, tuple) and len(stamp) == 2:
        return int(stamp[0]), int(stamp[1])
    ns = int(stamp)
    return ns // 1_000_000_000, ns % 1_000_000_000


def make_header(stamp: Any, frame_id: str = "camera_optical_frame") -> Header:
    """A Header with ``stamp`` (anything :func:`stamp_key` takes) and ``frame_id``."""
    sec, nanosec = stamp_key(stamp)
    return Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id=frame_id)


def _qos(reliable: bool, depth: int = 10) -> QoSProfile:
    return QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE if reliable
                      else ReliabilityPolicy.BEST_EFFORT)


def _wait(predicate: Callable[[], Any], timeout: float, what: str, poll: float):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(poll)


# ----------------------------------------------------------------------------------------------------------------
# The graph
# ----------------------------------------------------------------------------------------------------------------
class Graph:
    """One rclpy context with a spinning multi-threaded executor and a tester node that publishes and collects.

    ``domain_id`` None takes ``ROS_DOMAIN_ID`` from the environment. Use it as a context manager or call
    :meth:`close`. ``poll`` is the sleep between checks of the ``wait_*`` methods (arrival times are recorded in
    the subscription callbacks, so it does not limit the timing resolution).
    """

    def __init__(self, domain_id: int | None = None, name: str = "tester", threads: int = 2, poll: float = 0.02):
        confine_to_loopback()
        self.domain_id = domain_id
        self.poll = poll
        self.context = rclpy.Context()
        if domain_id is None:
            rclpy.init(context=self.context)
        else:
            rclpy.init(context=self.context, domain_id=int(domain_id))
        self.executor = MultiThreadedExecutor(num_threads=threads, context=self.context)
        self.tester = Node(name, context=self.context)
        self.executor.add_node(self.tester)
        self.nodes: list = []
        self._received: dict[str, list] = {}
        self._arrivals: dict[str, dict[tuple[int, int], float]] = {}
        self._keep: dict[str, int | None] = {}
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()

    # -- nodes ----------------------------------------------------------------------------------------------
    def add_node(self, node):
        """Spin ``node`` in this graph's executor; it is destroyed by :meth:`close`."""
        self.nodes.append(node)
        self.executor.add_node(node)
        return node

    def start_node(self, namespace: str = "", params: dict | None = None,
                   remaps: dict | None = None) -> DepthNode:
        """A :class:`DepthNode` in this process and graph, with ``params`` (name -> value) as overrides and
        ``remaps`` (from -> to) as its remapping rules (``--ros-args -r from:=to``)."""
        overrides = [Parameter(name, value=value) for name, value in (params or {}).items()]
        cli_args = None
        if remaps:
            cli_args = ["--ros-args"] + [a for k, v in remaps.items() for a in ("-r", f"{k}:={v}")]
        return self.add_node(DepthNode(context=self.context, namespace=namespace, parameter_overrides=overrides,
                                       cli_args=cli_args))

    # -- publishing -----------------------------------------------------------------------------------------
    def publisher(self, topic: str, msg_type, reliable: bool = True):
        return self.tester.create_publisher(msg_type, topic, _qos(reliable))

    def camera(self, namespace: str = "", reliable: bool = True, compressed: bool = False,
               image_topic: str | None = None, info_topic: str | None = "camera_info",
               info_reliable: bool | None = None) -> "Camera":
        """A :class:`Camera` publishing on ``NAMESPACE/image`` (or ``image/compressed``) and
        ``NAMESPACE/camera_info``; absolute ``image_topic``/``info_topic`` replace them, ``info_topic`` None
        publishes no camera_info."""
        def topic(name):
            return name if name.startswith("/") else f"{namespace.rstrip('/')}/{name}"
        image_topic = topic(image_topic or ("image/compressed" if compressed else "image"))
        return Camera(self, image_topic, topic(info_topic) if info_topic else None, reliable=reliable,
                      info_reliable=reliable if info_reliable is None else info_reliable,
                      msg_type=CompressedImage if compressed else Image)

    # -- collecting -----------------------------------------------------------------------------------------
    def collect(self, topic: str, msg_type=None, qos: QoSProfile | None = None, keep: int | None = None):
        """Subscribe to ``topic`` and record every message with its arrival time (``time.perf_counter()``).

        ``msg_type`` defaults to the node output's type (:data:`OUTPUT_TYPES`, by the topic's suffix); ``qos`` to
        reliable, depth 10. ``keep`` bounds the messages kept (the newest; 0 keeps none, only arrival times)."""
        if msg_type is None:
            # the longest matching suffix: ".../depth/camera_info" is a CameraInfo, not an Image
            matches = [name for name in OUTPUT_TYPES if topic == name or topic.endswith("/" + name)]
            if not matches:
                raise ValueError(f"collect({topic!r}): not a node output ({', '.join(OUTPUT_TYPES)}); give msg_type")
            msg_type = OUTPUT_TYPES[max(matches, key=len)]
        with self._lock:
            self._received.setdefault(topic, [])
            self._arrivals.setdefault(topic, {})
            self._keep[topic] = keep

        def on_message(msg):
            now = time.perf_counter()
            key = stamp_key(msg)
            with self._lock:
                self._arrivals[topic].setdefault(key, now)
                kept = self._received[topic]
                kept.append(msg)
                limit = self._keep[topic]
                if limit is not None and len(kept) > limit:
                    del kept[: len(kept) - limit]
        return self.tester.create_subscription(msg_type, topic, on_message, qos or _qos(True))

    def collect_outputs(self, namespace: str, topics: Iterable[str] = DEFAULT_OUTPUTS,
                        qos: QoSProfile | None = None, keep: int | None = None) -> list[str]:
        """:meth:`collect` the node's ``topics`` under ``namespace``; returns their full names."""
        names = [f"{namespace.rstrip('/')}/{t}" for t in topics]
        for name in names:
            self.collect(name, qos=qos, keep=keep)
        return names

    def messages(self, topic: str, stamp: Any = None) -> list:
        """The kept messages of ``topic`` (those with ``stamp`` when given), oldest first."""
        with self._lock:
            msgs = list(self._received.get(topic, []))
        if stamp is None:
            return msgs
        key = stamp_key(stamp)
        return [m for m in msgs if stamp_key(m) == key]

    def arrival(self, topic: str, stamp: Any) -> float | None:
        """When the first message of ``topic`` with ``stamp`` arrived (``time.perf_counter()``), or None."""
        with self._lock:
            return self._arrivals.get(topic, {}).get(stamp_key(stamp))

    def arrivals(self, topic: str) -> dict[tuple[int, int], float]:
        """Every stamp received on ``topic`` -> when its first message arrived (``time.perf_counter()``)."""
        with self._lock:
            return dict(self._arrivals.get(topic, {}))

    def completed(self, stamp: Any, topics: Iterable[str]) -> float | None:
        """The arrival time of the last of ``topics`` for ``stamp`` once every one has arrived, else None."""
        times = [self.arrival(t, stamp) for t in topics]
        return None if any(t is None for t in times) else max(times)

    # -- waiting --------------------------------------------------------------------------------------------
    def wait_for(self, predicate: Callable[[], Any], timeout: float = DEFAULT_TIMEOUT, what: str = "condition"):
        """Poll ``predicate`` until it returns something true (returned); :class:`TimeoutError` after ``timeout``."""
        return _wait(predicate, timeout, what, self.poll)

    def send_until(self, send: Callable[[], Any], predicate: Callable[[], Any], what: str, every: float = 5.0,
                   timeout: float = DEFAULT_TIMEOUT):
        """Call ``send()`` until ``predicate()`` holds, re-sending every ``every`` seconds: the node's camera
        subscription is best-effort by default, so on a loaded machine a large frame may be lost in transit."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            send()
            try:
                return self.wait_for(predicate, timeout=min(every, max(deadline - time.monotonic(), 0.1)),
                                     what=what)
            except TimeoutError:
                continue
        raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")

    def send_until_answered(self, send: Callable[[], Any], topics: Iterable[str], timeout: float = 60.0,
                            every: float = 5.0, alive: Callable[[], bool] = lambda: True) -> tuple[int, int]:
        """Call ``send()`` (it publishes a frame with a new stamp and returns it) until all ``topics`` answered one
        of those stamps; returns that stamp's key. A fresh stamp every ``every`` seconds: early frames are skipped
        while the node's publishers discover the subscriptions, and a best-effort camera may lose a frame.
        :class:`RuntimeError` as soon as ``alive()`` is false (e.g. the node process exited)."""
        topics = list(topics)
        deadline = time.monotonic() + timeout
        while True:
            if not alive():
                raise RuntimeError("the node is gone (its process exited)")
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no answer on {topics} within {timeout:g} s")
            key = stamp_key(send())
            t_resend = time.monotonic() + every
            while time.monotonic() < t_resend:
                if self.completed(key, topics) is not None:
                    return key
                time.sleep(self.poll)

    def wait_matched(self, pub, count: int = 1, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Until ``count`` subscriptions match the tester's publisher ``pub``."""
        self.wait_for(lambda: pub.get_subscription_count() >= count, timeout,
                      what=f"a subscriber on {pub.topic_name}")

    def wait_publisher(self, topic: str, count: int = 1, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Until the graph shows ``count`` publishers on ``topic`` (e.g. a node in another process)."""
        self.wait_for(lambda: self.tester.count_publishers(topic) >= count, timeout,
                      what=f"a publisher on {topic}")

    def wait_node_ready(self, node, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Until every publisher of the in-process ``node`` on a topic collected here sees a subscription (the
        node skips frames while no output has a subscriber)."""
        with self._lock:
            collected = set(self._received)
        pubs = [p for p in node.publishers if p.topic_name in collected]
        self.wait_for(lambda: all(p.get_subscription_count() >= 1 for p in pubs), timeout,
                      what="the node's subscribers")

    # -- shutdown -------------------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop spinning, destroy the nodes (an in-process DepthNode stops its worker) and the context."""
        self.executor.shutdown(timeout_sec=5)
        self._thread.join(10)
        for node in self.nodes:
            node.destroy_node()
        self.tester.destroy_node()
        rclpy.shutdown(context=self.context)

    def __enter__(self) -> "Graph":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Camera:
    """A camera's publishers in a :class:`Graph`: ``image`` (Image or CompressedImage) and ``camera_info``.

    :meth:`send` publishes the camera_info first and then the image, both with the same header, and records when
    the image was published (``sent``: stamp key -> ``time.perf_counter()``)."""

    def __init__(self, graph: Graph, image_topic: str, info_topic: str | None, reliable: bool = True,
                 info_reliable: bool = True, msg_type=Image):
        self.graph = graph
        self.image = graph.publisher(image_topic, msg_type, reliable)
        self.info = graph.publisher(info_topic, CameraInfo, info_reliable) if info_topic else None
        self.sent: dict[tuple[int, int], float] = {}

    def wait_matched(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Until the node subscribes to the image (and camera_info) topic."""
        for pub in (self.image, self.info):
            if pub is not None:
                self.graph.wait_matched(pub, timeout=timeout)

    def send(self, rgb=None, stamp: Any = 0, K=None, info: CameraInfo | None = None, msg=None,
             encoding: str = "rgb8", frame_id: str = "camera_optical_frame") -> tuple[int, int]:
        """Publish one frame; returns its stamp key.

        The image is ``msg`` as given (any header; e.g. a malformed message) or ``rgb`` ((H, W, 3) uint8 RGB) in
        ``encoding`` with the header (``stamp``, ``frame_id``; ``stamp`` may be a Header, whose frame_id then
        wins). The camera_info is ``info`` (its header replaced) or one built from ``K`` at the image's size (an
        Image ``msg``'s width and height); neither: none is sent."""
        header = conv.copy_header(stamp) if isinstance(stamp, Header) else make_header(stamp, frame_id)
        if self.info is not None and (info is not None or K is not None):
            if info is not None:
                info.header = conv.copy_header(header)
            else:
                h, w = rgb.shape[:2] if rgb is not None else (msg.height, msg.width)
                info = conv.make_camera_info(K, w, h, header)
            self.info.publish(info)
        image = msg if msg is not None else conv.rgb_to_image(rgb, header, encoding)
        key = stamp_key(header)
        self.sent[key] = time.perf_counter()
        self.image.publish(image)
        return key

    def latency(self, key: tuple[int, int], topics: Iterable[str]) -> float | None:
        """Seconds from publishing frame ``key`` to the arrival of the last of ``topics`` for it, or None."""
        done = self.graph.completed(key, topics)
        return None if done is None or key not in self.sent else done - self.sent[key]

    def close(self) -> None:
        """Destroy the publishers (the node then sees the camera leave)."""
        self.graph.tester.destroy_publisher(self.image)
        if self.info is not None:
            self.graph.tester.destroy_publisher(self.info)


# ----------------------------------------------------------------------------------------------------------------
# The node as a separate process
# ----------------------------------------------------------------------------------------------------------------
#: The package's node executables and their modules.
EXECUTABLES = {"depth_node": "dna_depth_ros.depth_node", "depth_lifecycle_node": "dna_depth_ros.lifecycle_node"}


def node_command(executable: str = "depth_node") -> list[str]:
    """The command that starts ``executable`` (``depth_node`` or ``depth_lifecycle_node``): the console script
    beside this interpreter (or on PATH), else ``python -m`` its module."""
    exe = shutil.which(executable, path=os.path.dirname(sys.executable)) or shutil.which(executable)
    return [exe] if exe else [sys.executable, "-m", EXECUTABLES[executable]]


def process_memory(pid: int) -> dict[str, float]:
    """``{"rss_mb": ..., "peak_rss_mb": ...}`` of a running process (``VmRSS``, ``VmHWM`` of /proc/PID/status,
    in MiB); empty once it has exited."""
    try:
        text = open(f"/proc/{int(pid)}/status").read()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out["rss_mb" if key == "VmRSS" else "peak_rss_mb"] = int(value.split()[0]) / 1024.0
    return out


class NodeProcess:
    """``depth_node`` in its own process, in a loopback-only graph (:func:`loopback_env`), output captured.

    ``namespace``, ``params_file``, ``params`` (name -> value, as ``-p name:=value``) and ``remaps``
    (from -> to) become ``--ros-args``; ``extra_args`` are appended after them. ``executable``: ``depth_node``
    or ``depth_lifecycle_node``; ``env``: extra environment variables (e.g. ``FASTDDS_DEFAULT_PROFILES_FILE``)."""

    def __init__(self, namespace: str | None = None, params: dict | None = None, params_file: str | None = None,
                 remaps: dict | None = None, domain_id: int | None = None, extra_args: Iterable[str] = (),
                 executable: str = "depth_node", env: dict | None = None):
        args = ["--ros-args"]
        if namespace:
            args += ["-r", f"__ns:={namespace}"]
        if params_file:
            args += ["--params-file", str(params_file)]
        for name, value in (params or {}).items():
            args += ["-p", f"{name}:={value}"]
        for src, dst in (remaps or {}).items():
            args += ["-r", f"{src}:={dst}"]
        self.command = node_command(executable) + args + list(extra_args)
        self.proc = subprocess.Popen(self.command, env={**loopback_env(domain_id), **(env or {})},
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        # A thread drains the output as it comes, so a long-running node never blocks on a full pipe.
        self._lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self._lines.append(line)

    @property
    def output(self) -> str:
        """What the process printed so far (stdout and stderr)."""
        return "".join(self._lines)

    def alive(self) -> bool:
        return self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def memory(self) -> dict[str, float]:
        """The process's current and peak resident memory (:func:`process_memory`)."""
        return process_memory(self.proc.pid)

    def wait(self, timeout: float = 120.0) -> tuple[int, str]:
        """Wait for the process to exit by itself: ``(return code, output)``."""
        self.proc.wait(timeout=timeout)
        self._reader.join(10)
        return self.proc.returncode, self.output

    def stop(self, timeout: float = 30.0) -> tuple[int, str]:
        """Interrupt (SIGINT, as Ctrl-C: the node logs its statistics) and wait: ``(return code, output)``.

        A node still running after ``timeout`` is asked for its threads' stacks (SIGUSR1, see
        :mod:`dna_depth_ros.cli`) and :class:`TimeoutError` is raised with the end of its output."""
        if self.alive():
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGUSR1)
            time.sleep(2.0)
            raise TimeoutError(f"the node did not stop within {timeout:g} s after SIGINT; its output ends with:\n"
                               f"{self.output[-6000:]}") from None

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
            self.wait(10)

    def __enter__(self) -> "NodeProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.kill()
