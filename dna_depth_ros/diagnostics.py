"""The node's health on ``/diagnostics`` (diagnostic_msgs/DiagnosticArray): rates, latency, counters, the camera
link, intrinsics and scale, with a level and the reasons for it.

:class:`DiagnosticsMonitor` is the logic, without ROS: each :meth:`~DiagnosticsMonitor.update` takes a
:class:`Inputs` (what the node knows at that moment: cumulative counters, the frames published since the last
report, the camera link seen in the graph) and returns a :class:`Report` covering the time since the previous
one. :func:`to_message` makes the DiagnosticArray.

Levels and reasons:

- ERROR: the camera's publishers are not matched (the reason names the QoS or type mismatch); publishers are
  matched but no frame arrived for ``no_frames_sec`` (likely cause: the transport; camera_info arriving while
  images do not makes it near certain); every frame of the period was rejected or failed.
- WARN: no camera publisher; no camera_info (fallback intrinsics or none); camera_info rejected; the metric scale
  not (yet) converged; falling behind (more than ``falling_behind`` of the received frames dropped); frames lost
  in transit (images arrive at under 80 % of camera_info's rate); frames rejected or failed.
- OK otherwise, and while the node is inactive (lifecycle) or idle (no output has a subscriber).
"""
from __future__ import annotations

import dataclasses

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

__all__ = ["CameraLink", "DiagnosticsMonitor", "Inputs", "OK", "WARN", "ERROR", "Report", "to_message"]

OK, WARN, ERROR = 0, 1, 2
LEVEL_NAMES = {OK: "OK", WARN: "WARN", ERROR: "ERROR"}


@dataclasses.dataclass
class CameraLink:
    """The image subscription as the graph shows it.

    topic: the subscription's resolved topic. expected_type: the message type it takes ('sensor_msgs/msg/Image').
    reliability: the subscription's ('reliable' or 'best_effort'). publishers: every publisher on the topic as
    ``(node name, type name, reliability)``. matched: how many of them the subscription is matched with.
    """

    topic: str
    expected_type: str
    reliability: str
    publishers: list[tuple[str, str, str]]
    matched: int


@dataclasses.dataclass
class Inputs:
    """What the node knows at one moment (counters are cumulative; the monitor takes differences).

    now: seconds (monotonic). active: processing frames (False: lifecycle inactive). subscribed: some output
    has a subscriber. received/processed/dropped/skipped/rejected/failed: frame counters
    (:class:`~dna_depth_ros.worker.NodeStats`); rejected_reasons: reason -> count. latencies: seconds from
    receipt to published, of the frames published since the last report. since_frame: seconds since the last
    frame arrived (or since the node became active, when none has). camera_info_received / camera_info_rejected:
    cumulative counts; camera_info_problems: the Problem keys of the rejected ones since the last report;
    intrinsics: 'camera_info', 'parameters' (the fallback) or 'none'. scale: mode, value, metric and, when
    known, converged and frozen. backend, device, model: what runs the network.
    """

    now: float
    active: bool
    subscribed: bool
    received: int
    processed: int
    dropped: int
    skipped: int
    rejected: int
    failed: int
    rejected_reasons: dict
    latencies: list[float]
    since_frame: float
    camera: CameraLink
    camera_info_received: int
    camera_info_rejected: int
    camera_info_problems: list[str]
    intrinsics: str
    scale: dict
    backend: str
    device: str
    model: str


@dataclasses.dataclass
class Report:
    """One report: ``level`` (OK, WARN, ERROR), ``message`` (the reasons, '; '-joined, or a summary when OK),
    ``reasons`` as ``(key, level, text)`` (key: a stable name of the kind of problem, e.g. 'qos_mismatch',
    'no_frames', 'falling_behind'), and ``values`` as ordered ``(key, text)`` pairs."""

    level: int
    message: str
    reasons: list[tuple[str, int, str]]
    values: list[tuple[str, str]]


class DiagnosticsMonitor:
    """Reports over the periods between successive :meth:`update` calls (see the module docstring)."""

    def __init__(self, falling_behind: float = 0.2, no_frames_sec: float = 5.0):
        self.falling_behind = float(falling_behind)
        self.no_frames_sec = float(no_frames_sec)
        self._last: Inputs | None = None

    def update(self, x: Inputs) -> Report:
        prev = self._last
        self._last = x
        dt = (x.now - prev.now) if prev is not None else 0.0

        def delta(name: str) -> int:
            return getattr(x, name) - (getattr(prev, name) if prev is not None else 0)

        def rate(name: str) -> float:
            return delta(name) / dt if dt > 0 else 0.0

        received, dropped = delta("received"), delta("dropped")
        bad = delta("rejected") + delta("failed")
        info_rate, image_rate = rate("camera_info_received"), rate("received")
        lat = np.asarray(x.latencies, dtype=np.float64)
        p50, p90 = (float(np.percentile(lat, q)) * 1000.0 for q in (50, 90)) if lat.size else (None, None)

        errors: list[str] = []
        warns: list[str] = []
        cam = x.camera
        if not x.active:
            state = "inactive"
        elif not x.subscribed:
            state = "idle (no subscriber on any output)"
        else:
            state = "active"
        if x.active:
            self._camera_link(x, info_rate, image_rate, received, errors, warns)
            if received and bad >= received:
                reason = max(x.rejected_reasons, key=x.rejected_reasons.get) if x.rejected_reasons else "failed"
                errors.append(("all_bad", f"every frame of the last {dt:.1f} s was rejected or failed (e.g. '{reason}')"))
            elif bad:
                warns.append(("bad", f"{bad} frame(s) rejected or failed in the last {dt:.1f} s"))
            if received >= 5 and dropped > self.falling_behind * received:
                med = f", {p50:.0f} ms per frame" if p50 is not None else ""
                warns.append(("falling_behind", f"falling behind: {dropped} of {received} frames dropped (processing "
                             f"{rate('processed'):.1f} Hz of a {image_rate:.1f} Hz camera{med}); use "
                             f"output_resolution network, a smaller network input or a GPU"))
            if x.intrinsics == "none":
                warns.append(("no_camera_info", "no camera_info: publishing depth only (no points, no depth/camera_info); check "
                             "the camera_info remapping, or set intrinsics.*"))
            elif x.intrinsics == "parameters":
                warns.append(("fallback_intrinsics", "no camera_info: using the intrinsics.* parameters"))
            if delta("camera_info_rejected"):
                keys = ", ".join(sorted(set(x.camera_info_problems))) or "?"
                using = {"camera_info": "the last good camera_info", "parameters": "the intrinsics.* parameters",
                         "none": "no intrinsics"}[x.intrinsics]
                warns.append(("camera_info_rejected", f"camera_info rejected ({keys}): using {using}"))
            s = x.scale
            if s.get("mode") == "camera_height" and not (s.get("converged") if "converged" in s else s.get("metric")):
                warns.append(("scale_not_converged", "scale not converged: no consistent ground-plane fit yet (is the ground visible in "
                             "scale.ground_roi?)" + ("" if s.get("metric") else "; depth is not metric")))
        level = ERROR if errors else WARN if warns else OK
        reasons = [(key, ERROR, text) for key, text in errors] + [(key, WARN, text) for key, text in warns]
        summary = f"{state}: {image_rate:.1f} Hz in, {rate('processed'):.1f} Hz out"
        values = [
            ("state", state),
            ("input topic", cam.topic),
            ("input QoS", cam.reliability),
            ("camera publishers (matched/total)", f"{cam.matched}/{len(cam.publishers)}"),
            ("input rate (Hz)", f"{image_rate:.2f}"),
            ("camera_info rate (Hz)", f"{info_rate:.2f}"),
            ("output rate (Hz)", f"{rate('processed'):.2f}"),
            ("latency p50 (ms)", "-" if p50 is None else f"{p50:.1f}"),
            ("latency p90 (ms)", "-" if p90 is None else f"{p90:.1f}"),
            ("seconds since last frame", f"{x.since_frame:.1f}"),
            ("received", str(x.received)),
            ("processed", str(x.processed)),
            ("dropped", str(x.dropped)),
            ("skipped (no subscribers)", str(x.skipped)),
            ("rejected", str(x.rejected)),
            ("failed", str(x.failed)),
            ("camera_info rejected", str(x.camera_info_rejected)),
            ("intrinsics", x.intrinsics),
            ("scale mode", str(x.scale.get("mode"))),
            ("scale", f"{x.scale.get('value', float('nan')):.6g}"),
            ("scale metric", str(bool(x.scale.get("metric")))),
        ]
        for key in ("converged", "frozen"):
            if key in x.scale:
                values.append((f"scale {key}", str(bool(x.scale[key]))))
        values += [("backend", x.backend), ("device", x.device), ("model", x.model)]
        return Report(level=level, message="; ".join(text for _, _, text in reasons) if reasons else summary, reasons=reasons,
                      values=values)

    def _camera_link(self, x: Inputs, info_rate: float, image_rate: float, received: int, errors: list,
                     warns: list) -> None:
        cam = x.camera
        if not cam.publishers:
            warns.append(("no_publisher", f"no publisher on '{cam.topic}' (is the camera running, and 'image' remapped to its "
                         f"topic?)"))
            return
        unmatched = len(cam.publishers) - cam.matched
        if unmatched > 0:
            wrong_type = [(n, t) for n, t, _ in cam.publishers if t != cam.expected_type]
            best_effort = [n for n, t, r in cam.publishers if t == cam.expected_type and r == "best_effort"]
            if wrong_type:
                node, type_name = wrong_type[0]
                errors.append(("wrong_type", f"publisher '{node}' on '{cam.topic}' sends {type_name}, the node takes "
                              f"{cam.expected_type} (check image_transport and the remapping)"))
            elif cam.reliability == "reliable" and best_effort:
                errors.append(("qos_mismatch", f"QoS mismatch: '{best_effort[0]}' publishes '{cam.topic}' best effort and the node "
                              f"subscribes reliable, so nothing is delivered; set qos.input.reliability: "
                              f"best_effort"))
            else:
                errors.append(("unmatched", f"{unmatched} publisher(s) on '{cam.topic}' not matched: incompatible QoS "
                              f"(durability, deadline or liveliness)"))
        if cam.matched and received == 0 and x.since_frame >= self.no_frames_sec:
            evidence = (f"camera_info arrives at {info_rate:.1f} Hz, so the camera is running; "
                        if info_rate > 0 else "")
            errors.append(("no_frames", f"publishers matched on '{cam.topic}' but no frame for {x.since_frame:.0f} s: "
                          f"{evidence}likely cause: the transport loses large frames (best-effort delivery of "
                          f"multi-fragment samples, a small Fast DDS shared-memory segment); use the package's "
                          f"Fast DDS profile, a reliable camera with qos.input.reliability: reliable, or "
                          f"image_transport: compressed"))
        elif received and info_rate >= 1.0 and image_rate < 0.8 * info_rate:
            warns.append(("lost_in_transit", f"frames lost in transit: images arrive at {image_rate:.1f} Hz but camera_info at "
                         f"{info_rate:.1f} Hz; likely cause: the transport (see docs/ros.md, QoS)"))


def to_message(report: Report, name: str, hardware_id: str, stamp) -> DiagnosticArray:
    """``report`` as a DiagnosticArray with one DiagnosticStatus called ``name``, stamped ``stamp``."""
    status = DiagnosticStatus(level=bytes([report.level]), name=name, message=report.message,
                              hardware_id=hardware_id,
                              values=[KeyValue(key=k, value=v) for k, v in report.values])
    msg = DiagnosticArray(status=[status])
    msg.header.stamp = stamp
    return msg
