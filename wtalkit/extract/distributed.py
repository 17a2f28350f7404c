"""Distributed extraction on Ray (``wtalkit extract ... --ray [auto|ADDRESS]``).

One Ray task per video, scheduled with what it needs (``num_cpus``, and
``num_gpus`` when the videos are encoded on a GPU). A task runs the same
per-video function as local extraction
(:func:`wtalkit.extract.pipeline.process_video`) and *returns* the features;
the driver (the process running ``wtalkit extract``) writes them, atomically,
with the same code as the local path. So a worker killed at any moment leaves
no file behind, the dataset is written byte for byte as a local run writes it,
and the output folder needs to exist only where the driver runs. Resuming,
skipping videos already done and the end-of-run summary are the local path's
(:func:`~wtalkit.extract.dataset.extract_dataset` drives both).

What every node needs: the same wtalkit and its dependencies (the workers
import it; features made by another version could differ), the videos and
weight files at the same paths as on the driver (a shared file system), or
the weights in that node's cache. Each worker process builds the encoders
once and keeps them for the videos it runs after that.

Progress: workers report a video's start, length and frames processed to a
small actor (``num_cpus=0``) that the driver reads twice a second, so the
progress bar shows frames and an ETA across the cluster.

Ray is imported here only, and this module only on the ``--ray`` path: ``import
wtalkit`` never needs Ray (``pip install 'wtalkit[ray]'``).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections import deque
from pathlib import Path

from wtalkit.errors import WtalError

INSTALL_HINT = "pip install 'wtalkit[ray]'"
DEFAULT_CPUS = 2.0  # per video task: the decoding thread and the encoder's kernels
REPORT_EVERY = 0.5  # seconds between a worker's progress reports
CONNECT_TIMEOUT = 5.0  # seconds to reach a cluster's address before ray.init


def import_ray():
    """The ``ray`` module, or a one-line WtalError telling how to install it."""
    try:
        import ray
    except ImportError:
        raise WtalError(f"--ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


def _host_port(text: str):
    """``(host, port)`` of ``HOST:PORT`` or ``ray://HOST:PORT``; None if it is not of that form."""
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "", text
    host, _, port = rest.rpartition(":")
    host = host.strip("[]")
    if scheme not in ("", "ray") or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host, int(port)


def _unreachable(host: str, port: int) -> str | None:
    """Why nothing accepts a connection at ``host:port`` (None if something does)."""
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT).close()
    except OSError as e:
        return e.strerror or type(e).__name__
    return None


def parse_address(address: str) -> str | None:
    """``None`` for ``auto``, else the address checked for form and reachability (one-line WtalError).

    (``ray.init`` waits minutes on an address where nothing listens, and then exits the process.)
    """
    text = str(address or "").strip()
    if text.lower() in ("", "auto"):
        return None
    hp = _host_port(text)
    if hp is None:
        raise WtalError(
            f"--ray: expected auto, HOST:PORT (the head node's address, port 6379 by default) or "
            f"ray://HOST:PORT (Ray Client, port 10001), got '{address}'"
        )
    why = _unreachable(*hp)
    if why:
        raise WtalError(
            f"--ray {text}: no Ray cluster answers there ({why}); start one with `ray start --head` "
            f"and give the address it prints"
        )
    return text


def _auto_address(ray) -> str | None:
    """What ``--ray auto`` connects to: ``"auto"`` for a live cluster of this machine (or RAY_ADDRESS),
    ``"local"`` (start one) when there is none or the one recorded is gone (a head killed uncleanly)."""
    try:
        from ray._private.services import get_ray_address_from_environment

        found = get_ray_address_from_environment("auto", None)
    except ConnectionError:
        return "local"
    except Exception:  # Ray's internals moved: let ray.init look (and start one if it finds none)
        return None
    hp = _host_port(str(found))
    why = _unreachable(*hp) if hp else None
    if why and os.environ.get("RAY_ADDRESS"):
        raise WtalError(f"--ray auto: RAY_ADDRESS={found}, where no Ray cluster answers ({why})")
    return "local" if why else "auto"


class RayCluster:
    """A connection to a Ray cluster and what each video task reserves there."""

    def __init__(self, ray, owned: bool, device: str, precision: str, cpus: float, gpus: float):
        self.ray = ray
        self.owned = owned  # connected (or started) by us: disconnected by close()
        self.device = device  # "cpu" or "cuda", on the workers
        self.precision = precision
        self.cpus = cpus
        self.gpus = gpus

    # ------------------------------------------------------------------ connecting

    @classmethod
    def connect(cls, address, device=None, precision: str = "auto", cpus=None, gpus=None) -> RayCluster:
        """Connect to the cluster at ``address`` (``auto``: the one started on this machine with ``ray start``
        or ``RAY_ADDRESS``, else a one-machine Ray for this run) and check the resources asked for.

        If this process is already connected (``ray.init`` done by the caller), that connection is used
        and left open. Raises a one-line WtalError for no Ray, a bad address, a device or resources the
        cluster does not have.
        """
        from wtalkit.device import PRECISIONS

        ray = import_ray()
        device = str(device or "auto").strip().lower()
        if device.startswith("cuda:"):
            raise WtalError(
                f"--device {device} does not apply with --ray: Ray gives each video task its own GPU; "
                f"use --device cuda (or auto)"
            )
        if device not in ("auto", "cpu", "cuda"):
            raise WtalError(f"unknown device '{device}' (with --ray use cpu, cuda or auto)")
        precision = str(precision or "auto").lower()
        if precision not in PRECISIONS:
            raise WtalError(f"precision must be one of {', '.join(PRECISIONS)}, got '{precision}'")
        if cpus is not None and not cpus > 0:
            raise WtalError(f"--ray-cpus must be > 0, got {cpus}")
        if gpus is not None and not 0 <= gpus <= 1:
            raise WtalError(
                f"--ray-gpus must be between 0 and 1 (a video task uses one GPU or a share of one), got {gpus}"
            )
        owned = False
        if not ray.is_initialized():
            target = parse_address(address)
            options = dict(logging_level=logging.ERROR, log_to_driver=False)
            try:
                if target is None:
                    auto = _auto_address(ray)
                    if auto == "auto":
                        ray.init(address="auto", **options)
                    elif auto == "local":  # no cluster on this machine: start one for this run
                        ray.init(address="local", include_dashboard=False, **options)
                    else:
                        try:
                            ray.init(address="auto", **options)
                        except ConnectionError:
                            ray.init(address="local", include_dashboard=False, **options)
                else:
                    ray.init(address=target, **options)
            except (ConnectionError, ValueError, RuntimeError, TimeoutError, OSError, SystemExit) as e:
                from wtalkit.extract.pipeline import error_line

                ray.shutdown()
                hint = ""
                if target is not None and not os.environ.get("RAY_AUTH_MODE"):
                    # Ray enables token authentication by default; an explicit address never picks up a token
                    hint = " (if the cluster uses token authentication: RAY_AUTH_MODE=token and its RAY_AUTH_TOKEN)"
                raise WtalError(f"--ray {address}: cannot connect to Ray: {error_line(e)}{hint}") from None
            owned = True
        try:
            return cls._checked(ray, owned, device, precision, cpus, gpus)
        except BaseException:
            if owned:
                ray.shutdown()
            raise

    @classmethod
    def _checked(cls, ray, owned, device, precision, cpus, gpus) -> RayCluster:
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
        total_gpus = sum(r.get("GPU", 0) for r in nodes)
        if device == "auto":
            device = "cuda" if total_gpus > 0 else "cpu"
        if device == "cuda" and total_gpus <= 0:
            raise WtalError("--device cuda: the Ray cluster has no GPU (use --device cpu, or add GPU nodes)")
        if device == "cpu":
            if gpus:
                raise WtalError("--ray-gpus needs --device cuda (or auto on a cluster with GPUs)")
            if precision == "fp16":
                raise WtalError("fp16 is only supported on CUDA; use bf16 or fp32 on CPU")
            gpus = 0.0
        elif gpus is None:
            gpus = 1.0
        elif gpus <= 0:
            raise WtalError("--ray-gpus must be > 0 with --device cuda")
        max_cpus = max((r.get("CPU", 0) for r in nodes), default=0)
        if cpus is None:
            cpus = min(DEFAULT_CPUS, max_cpus) if max_cpus > 0 else DEFAULT_CPUS
        fits = [r for r in nodes if r.get("CPU", 0) >= cpus and r.get("GPU", 0) >= gpus]
        if not fits:
            need = f"{cpus:g} CPUs" + (f" and {gpus:g} GPU" if gpus else "")
            raise WtalError(
                f"--ray: no node of the Ray cluster has {need} for a video task (largest: {max_cpus:g} CPUs); "
                f"lower --ray-cpus"
            )
        return cls(ray, owned, device, precision, float(cpus), float(gpus))

    def close(self) -> None:
        """Disconnect (and stop the one-machine Ray started for this run); a caller's connection stays."""
        if self.owned:
            self.ray.shutdown()
            self.owned = False

    # ------------------------------------------------------------------ running

    def capacity(self) -> int:
        """How many video tasks the cluster can run at once now."""
        res = self.ray.cluster_resources()
        n = res.get("CPU", 0) / self.cpus
        if self.gpus:
            n = min(n, res.get("GPU", 0) / self.gpus)
        return max(1, int(n))

    def run(self, todo, streams, progress, finish) -> None:
        """Extract the videos ``todo`` as Ray tasks; ``finish(result, info, feats, cos)`` commits each one here.

        Tasks are submitted a window at a time (twice what the cluster runs at once),
        in the order given. A task that dies (worker killed, node lost, out of memory)
        is retried by Ray (``max_retries``, 3); after that its video is a failure in
        the summary. On interruption the tasks in flight are cancelled; nothing of
        theirs is written.
        """
        from wtalkit.extract.pipeline import VideoResult, error_line

        ray = self.ray
        streams = {n: _absolute_weights(spec) for n, spec in streams.items()}  # workers have their own cwd
        threads = max(1, round(self.cpus))
        task = ray.remote(num_cpus=self.cpus, num_gpus=self.gpus, max_calls=0)(_video_task)
        sink = ray.remote(num_cpus=0)(_ProgressSink).remote()
        queue = deque(todo)
        pending: dict = {}  # object ref -> video path
        rank = {p.stem: i for i, p in enumerate(todo)}
        finished: set = set()
        reported: dict = {}  # name -> frames reported by its worker so far
        try:
            while queue or pending:
                window = 2 * self.capacity()
                while queue and len(pending) < window:
                    p = queue.popleft()
                    ref = task.remote(str(_absolute(p)), p.stem, streams, self.device, self.precision, threads, sink)
                    pending[ref] = p
                ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=REPORT_EVERY)
                self._relay(sink, progress, finished, reported)
                for ref in sorted(ready, key=lambda r: rank[pending[r].stem]):
                    p = pending.pop(ref)
                    try:
                        result, info, feats, cos = ray.get(ref)
                    except ray.exceptions.RayError as e:
                        cause = getattr(e, "cause", None) or e
                        result, info, feats, cos = (
                            VideoResult(p.stem, str(p), "failed", error=f"Ray: {error_line(cause)}"),
                            None,
                            None,
                            None,
                        )
                    if str(_absolute(p)) != str(p):  # name the video as it was given, as a local run does
                        result.path = str(p)
                        if result.error:
                            result.error = result.error.replace(str(_absolute(p)), str(p))
                    finished.add(p.stem)
                    missing = result.frames - reported.pop(p.stem, 0.0)
                    if missing > 0:  # reports still on their way: count the frames now
                        progress.advance(missing)
                    finish(result, info, feats, cos)
        except BaseException:
            for ref in pending:
                try:
                    ray.cancel(ref)
                except Exception:
                    pass
            raise
        finally:
            try:
                ray.kill(sink)
            except Exception:
                pass

    def _relay(self, sink, progress, finished, reported) -> None:
        """Pass the workers' progress reports on to ``progress`` (those of finished videos are late: dropped)."""
        try:
            events = self.ray.get(sink.take.remote(), timeout=10)
        except Exception:  # progress is best effort; the results are what counts
            return
        for kind, name, value in events:
            if name in finished:
                continue
            if kind == "start":
                progress.video_start(name)
            elif kind == "length":
                progress.video_length(name, value)
            else:
                reported[name] = reported.get(name, 0.0) + value
                progress.video_advance(name, value)


def _absolute(path) -> Path:
    return Path(path).expanduser().absolute()


def _absolute_weights(spec):
    """The spec with a relative local weights path made absolute (I3D's ``rgb=...,flow=...`` already are)."""
    from dataclasses import replace

    w = spec.weights
    if w and "=" not in str(w) and Path(w).expanduser().exists():
        return replace(spec, weights=str(_absolute(w)))
    return spec


# ---------------------------------------------------------------------- worker side


class _ProgressSink:
    """A Ray actor collecting the workers' progress reports until the driver takes them."""

    def __init__(self):
        self.events: list = []

    def put(self, events) -> None:
        self.events.extend(events)

    def take(self) -> list:
        out, self.events = self.events, []
        return out


class _Reporter:
    """A worker's progress for one video, sent to the sink at most every REPORT_EVERY seconds."""

    def __init__(self, sink, name):
        self.sink, self.name = sink, name
        self.events: list = []
        self.frames = 0.0
        self.last = time.monotonic()

    def _push(self, kind, value, force=False) -> None:
        if kind == "advance":
            self.frames += value
        else:
            self.events.append((kind, self.name, value))
        if force or time.monotonic() - self.last >= REPORT_EVERY:
            self.flush()

    def start(self) -> None:
        self._push("start", 0.0, force=True)

    def length(self, frames) -> None:
        self._push("length", frames, force=True)

    def advance(self, frames) -> None:
        self._push("advance", frames)

    def flush(self) -> None:
        if self.frames:
            self.events.append(("advance", self.name, self.frames))
            self.frames = 0.0
        if self.events:
            try:
                self.sink.put.remote(self.events)
            except Exception:
                pass
            self.events = []
        self.last = time.monotonic()


_ENCODERS: dict = {}  # this worker process's encoders, by (streams, device, precision)


def _worker_encoders(streams, device, precision) -> dict:
    """Built once per worker process, kept for the videos it runs next (on Ray, workers are reused)."""
    from wtalkit.extract.pipeline import build_encoder

    key = (tuple(sorted(streams.items())), device, precision)
    if key not in _ENCODERS:
        _ENCODERS.clear()  # one set of models per worker process
        _ENCODERS[key] = {name: build_encoder(spec, device, precision) for name, spec in streams.items()}
    return _ENCODERS[key]


def _video_task(path, name, streams, device, precision, threads, sink):
    """One video on a Ray worker: the local path's :func:`process_video`, the features returned, nothing written."""
    import torch

    from wtalkit.extract.pipeline import VideoResult, error_line, process_video

    def failed(msg):
        import ray

        node = ray.util.get_node_ip_address()
        return VideoResult(name, str(path), "failed", error=f"{msg} (on Ray node {node})"), None, None, None

    if device == "cpu":
        torch.set_num_threads(threads)
    try:
        encoders = _worker_encoders(streams, device, precision)
    except (KeyboardInterrupt, SystemExit, MemoryError):
        raise
    except Exception as e:  # e.g. weights missing on this node: the video fails, saying where
        return failed(error_line(e))
    report = _Reporter(sink, name)
    report.start()
    try:
        return process_video(path, name, streams, encoders, advance=report.advance, on_length=report.length)
    finally:
        report.flush()
