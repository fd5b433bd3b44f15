"""Running the pipeline, and the ZeroMQ side: run, listen, keys."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from irstream.cli.common import out, err, user_errors, progress, THREADS_HELP, FLAGS, json_safe
from irstream.errors import UserError

app = typer.Typer()


@app.command()
@user_errors
def run(
    sources: Annotated[Optional[list[str]], typer.Argument(help="Video file, image folder or glob, camera index or /dev/video "
                                                               "path, rtsp:// or http:// URL, GStreamer pipeline; several run in "
                                                               "one process, batched; default: the pipeline's.")] = None,
    pipeline: Annotated[Optional[Path], typer.Option(help="Pipeline TOML (see pipelines/); default: pipelines/default.toml.")] = None,
    preview: Annotated[Optional[bool], typer.Option("--preview/--no-preview", help="Show a window (q/Esc quits, space pauses).")] = None,
    save: Annotated[Optional[str], typer.Option(help="Write the annotated video here (.mp4, .mkv lossless, .avi).")] = None,
    frames_dir: Annotated[Optional[str], typer.Option(help="Write annotated frames as PNGs into this folder.")] = None,
    jsonl: Annotated[Optional[str], typer.Option(help="Write one JSON message per frame here.")] = None,
    mot: Annotated[Optional[str], typer.Option(help="Write confirmed tracks as MOTChallenge CSV here.")] = None,
    publish: Annotated[Optional[str], typer.Option(help="Publish over ZeroMQ, e.g. tcp://127.0.0.1:5556.")] = None,
    curve_dir: Annotated[Optional[str], typer.Option(help="Key folder from `irstream keys`: publish encrypted, to "
                                                          "authorised subscribers only.")] = None,
    web: Annotated[Optional[str], typer.Option(help="Serve the annotated live picture and the tracks to browsers at "
                                                    "HOST:PORT, e.g. 127.0.0.1:8080 (another address needs --web-token).")] = None,
    web_token: Annotated[Optional[str], typer.Option(
        envvar="IRSTREAM_WEB_TOKEN", show_envvar=True,
        help="The token browsers must give (?token=...) for --web; from the environment, it stays out of the process list.")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu or cuda.")] = None,
    runtime: Annotated[Optional[str], typer.Option(help="auto (fastest measured that agrees), torch (eager fp32), openvino (CPU), onnxruntime (CPU) or "
                                                       "triton (a Triton server: --triton-url).")] = None,
    triton_url: Annotated[Optional[str], typer.Option(help="The Triton server's gRPC host:port, for --runtime triton.")] = None,
    weights: Annotated[Optional[str], typer.Option(help="A .safetensors file written by irstream.")] = None,
    threshold: Annotated[Optional[float], typer.Option(help="Target probability threshold.")] = None,
    upscale: Annotated[Optional[int], typer.Option(help="Run the model on the frame enlarged by this factor (tiny targets).")] = None,
    coarse: Annotated[Optional[int], typer.Option(help="Also run the model on the frame shrunk 2 or 4 times and merge its large targets (close drones); 0 = off.")] = None,
    mode: Annotated[Optional[str], typer.Option(help="auto, file (never drop) or live (newest frame wins).")] = None,
    max_frames: Annotated[Optional[int], typer.Option(help="Stop after this many frames.")] = None,
    wait_subscriber: Annotated[Optional[float], typer.Option(help="Hold the first frame up to this many seconds until a "
                                                                  "ZeroMQ subscriber connects, so it gets every message.")] = None,
    threads: Annotated[Optional[int], typer.Option(help=THREADS_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON instead of tables.")] = False,
) -> None:
    """Detect and track targets in a video, image sequence, camera or stream."""
    import threading

    from irstream.config import load_pipeline, override
    from irstream.pipeline.run import Pipeline, graceful_interrupt

    cfg = load_pipeline(pipeline)
    uris = list(sources or []) or [s.uri for s in cfg.sources] or [cfg.source.uri]
    cfg = override(cfg, FLAGS, **{
        "source.uri": uris[0] or None, "source.mode": mode, "output.preview": preview, "output.save": save,
        "output.frames_dir": frames_dir,
        "output.jsonl": jsonl, "output.mot": mot, "output.publish": publish, "output.curve_dir": curve_dir,
        "output.web": web, "output.web_token": web_token, "model.device": device,
        "model.runtime": runtime, "model.triton_url": triton_url,
        "model.weights": weights, "model.upscale": upscale, "model.coarse": coarse, "targets.score_threshold": threshold, "run.max_frames": max_frames,
        "output.wait_subscriber_s": wait_subscriber, "run.threads": threads})
    if not cfg.source.uri:
        raise UserError("no source: give one (`irstream run clip.mp4`) or set [source] uri in the pipeline file")
    # Several sources: those given here, or the pipeline's [[source]] list; one: [source], as overridden.
    chosen = (list(sources) if sources else None) if len(uris) > 1 else [cfg.source]
    stop, paused = threading.Event(), threading.Event()
    extra = _preview_sink(stop, paused) if cfg.output.preview and len(uris) == 1 else []
    with progress() as prog:
        tasks: list[int] = []
        pipe = Pipeline(cfg, chosen, extra_sinks=extra, stop=stop, paused=paused,
                        on_frame=lambda res: prog.advance(tasks[res.stream]))
        if pipe.web is not None:
            err.print(f"web view: {escape(pipe.web.url)}", highlight=False)
        for lane in pipe.lanes:
            total = None if lane.live else lane.source.frame_count
            if total and cfg.run.max_frames:
                total = min(total, cfg.run.max_frames)
            tasks.append(prog.add_task(lane.source.source_id[-40:], total=total))

        def on_signal(_signum):
            err.print("stopping: finishing the frames in flight and closing outputs (Ctrl-C again to quit now)")

        with graceful_interrupt(stop, on_signal):
            pipe.run()
    for summary in pipe.summaries:
        _print_summary(summary, cfg, as_json)


def _preview_sink(stop, paused) -> list:
    from irstream.sinks.preview import PreviewSink, display_available

    if not display_available():
        err.print("preview: no display here (no DISPLAY, or it cannot be opened); running headless")
        return []
    return [("preview", PreviewSink(stop, paused), True)]


def _print_summary(s, cfg, as_json: bool) -> None:
    from irstream.tools.soak import peak_rss_mib

    d = s.to_dict()
    outputs, timing, lat = d["outputs"], d["timing"], d["latency"]
    if as_json:
        print(json.dumps(json_safe(d | {"process_peak_rss_mib": peak_rss_mib()})))
        return
    t = Table(title=escape(f"run: {s.source}"), show_header=False)
    t.add_column("what", no_wrap=True)
    t.add_column("value")
    rows = [("device", s.device + (" (live)" if s.live else " (file)")
                       + (", temporal evidence (a lossless source)" if s.temporal else "")),
            ("frames", f"{s.frames_processed} processed, {s.frames_read} read, {s.frames_dropped} dropped"
                       + (f", {s.frames_frozen} frozen (skipped)" if s.frames_frozen else "")),
            ("rate", f"{s.fps:.1f} frames/s over {s.wall_s:.1f} s"),
            ("detections", f"{s.detections} ({s.detections / max(1, s.frames_processed):.2f} per frame)"),
            ("tracks ever confirmed", f"{s.confirmed_tracks} ids; {s.published_track_frames / max(1, s.frames_processed):.2f} "
                                      "published per frame on average"),
            ("latency read->tracks", f"p50 {lat['p50_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms")]
    for name, o in outputs.items():
        target = "window" if name == "preview" else getattr(cfg.output, name, "")
        unfinished = ", gave up closing it (still busy)" if o["timed_out"] else ""
        rows.append((f"output {name}", f"{target}  {o['written']} written, {o['dropped']} dropped{unfinished}"))
    if s.outages_s:
        rows.append(("outages", f"{len(s.outages_s)}, longest {max(s.outages_s):.1f} s; {s.reconnects} reconnect(s) "
                                "(the source was lost and reopened)"))
    if s.runtime_outages:
        rows.append(("model server", f"{s.runtime_outages} outage(s): frames waited for it (see the log)"))
    if s.stalls:
        rows.append(("stalls", f"{s.stalls} (a stage held a frame over watchdog_s; see the log)"))
    if s.frames_corrupt:
        rows.append(("corrupt", f"{s.frames_corrupt} of the {s.frames_expected or '?'} frames the file announces "
                                "could not be decoded and were skipped (damaged or truncated file)"))
    if s.stopped_early:
        rows.append(("stopped", "early, on request; outputs flushed and closed"))
    for name, value in rows:
        t.add_row(name, escape(value))
    out.print(t)
    st = Table(title="timing", caption="read->X: from frame read to X")
    for col in ("stage", "p50 ms", "p99 ms"):
        st.add_column(col, justify="left" if col == "stage" else "right", no_wrap=True)
    for k, v in timing.items():
        st.add_row(k, f"{v['p50_ms']:.2f}", f"{v['p99_ms']:.2f}")
    out.print(st)


@app.command()
@user_errors
def listen(
    endpoint: Annotated[str, typer.Argument(help="Where a run publishes, e.g. tcp://127.0.0.1:5556.")] = "tcp://127.0.0.1:5556",
    topic: Annotated[str, typer.Option(help="Topic to subscribe to.")] = "irstream",
    as_json: Annotated[bool, typer.Option("--json", help="Print each message as one JSON line.")] = False,
    timeout: Annotated[float, typer.Option(help="Stop after this many seconds without a message; 0 = never.")] = 0.0,
    count: Annotated[int, typer.Option(help="Stop after this many messages; 0 = never.")] = 0,
    curve_dir: Annotated[str, typer.Option(help="Key folder holding client.key_secret and the publisher's "
                                                "server.key (see `irstream keys`).")] = "",
) -> None:
    """Subscribe to a run's ZeroMQ messages: a live table of tracks, or JSON lines."""
    from rich.live import Live

    from irstream.sinks.message import validate
    from irstream.sinks.publish import Connection, subscribe

    if count < 0 or timeout < 0:
        raise UserError(f"--count {count} --timeout {timeout}: both must be >= 0 (0 = never stop)")
    seen = bad = 0
    stopped = False
    conn = Connection()
    live = None if as_json else Live(_tracks_table(None), console=out, auto_refresh=False)
    with live or contextlib.nullcontext():
        try:
            for _topic, payload in subscribe(endpoint, topic, timeout or None, curve_dir, conn):
                try:
                    msg = json.loads(payload)
                except ValueError:
                    msg = None
                problem = "not JSON" if msg is None else validate(msg)
                if problem:
                    bad += 1
                    err.print(escape(f"{endpoint}: skipped a message: {problem}"))
                    continue
                seen += 1
                if as_json:
                    print(payload.decode(), flush=True)
                else:
                    live.update(_tracks_table(msg), refresh=True)
                if count and seen >= count:
                    break
        except KeyboardInterrupt:
            stopped = True  # the user's own stop: a summary, and no complaint about the publisher
    if not as_json:
        err.print(f"{seen} messages, {bad} skipped")
    if stopped or (count and seen >= count):
        return
    if not conn.connected:
        raise UserError(f"{endpoint}: no publisher came within {timeout:g} s; start the run with "
                        f"--publish {endpoint} (and --wait-subscriber S to hold its first frame for this listener)")
    if timeout and seen:
        err.print(escape(f"{endpoint}: the publisher {'went away' if conn.gone else 'went quiet'} after {seen} messages "
                         f"({timeout:g} s without one)"))
    elif timeout:
        err.print(escape(f"{endpoint}: a publisher is there but sent nothing on topic '{topic}' for {timeout:g} s"))


@app.command()
@user_errors
def keys(
    folder: Annotated[Path, typer.Argument(help="Folder to create the key pairs in.")],
) -> None:
    """Create CurveZMQ key pairs for an encrypted, authenticated feed (`run --curve-dir`, `listen --curve-dir`)."""
    from irstream.sinks.publish import create_keys

    paths = create_keys(folder)
    out.print(f"publisher: {escape(str(paths['server_secret']))} (keep here) and {escape(str(folder / 'authorized_clients'))}/")
    out.print(f"subscriber: copy {escape(str(paths['client_secret']))} and {escape(str(paths['server_public']))} "
              "to the subscribing machine, and pass that folder as --curve-dir")


def _tracks_table(msg: dict | None) -> Table:
    title = "waiting for messages..." if msg is None else (
        f"{msg['source']}  frame {msg['frame']}  t={msg['timestamp_s']:.3f}s  latency {msg['latency_ms']:.1f} ms  "
        f"detections {len(msg['detections'])}")
    t = Table(title=title)
    for col in ("id", "state", "x", "y", "vx px/s", "vy px/s", "age", "hits", "score"):
        t.add_column(col, justify="right", no_wrap=True)
    for tr in (msg or {}).get("tracks", []):
        t.add_row(str(tr["id"]), tr["state"], f"{tr['x']:.1f}", f"{tr['y']:.1f}", f"{tr['vx']:.1f}", f"{tr['vy']:.1f}",
                  str(tr["age"]), str(tr["hits"]), f"{tr['score']:.2f}")
    return t
