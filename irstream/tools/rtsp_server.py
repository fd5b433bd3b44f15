"""A real RTSP server for tests and the soak: GStreamer's gst-rtsp-server serving H.264 video
files on loopback, as a network camera does.

It is its own program, run with the system Python that has GStreamer's bindings (Debian:
`gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-good
gstreamer1.0-plugins-bad`), not with irstream's environment, so it imports nothing of irstream:

    /usr/bin/python3 irstream/tools/rtsp_server.py --port 8554 --path /cam CLIP.mp4

The file's H.264 is sent as it is (demuxed, parsed, packetised: no re-encoding), in real time,
looped without a gap by segment seeks, so a stream lasts as long as the server runs.  One
pipeline is shared by every client, as a camera's encoder is.  It prints "ready" once it
listens, and stops on SIGTERM or SIGINT.
"""

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def launch_line(clip: str) -> str:
    # config-interval -1: SPS/PPS with every IDR frame, so a client that joins or comes back
    # mid-stream can decode from the next key frame.
    return (f'( filesrc location="{clip}" ! qtdemux ! h264parse config-interval=-1 '
            f"! rtph264pay name=pay0 pt=96 config-interval=-1 )")


def loop_forever(media: GstRtspServer.RTSPMedia) -> None:
    """Play the media's file in a loop: once prepared (prerolled, before any client is sent a
    packet), one flushing segment seek to the start; a segment ends in SEGMENT_DONE instead of
    EOS, and the next segment seek, without flushing, continues the running time without a gap
    (a camera's timestamps never jump back)."""
    pipeline = media.get_element().get_parent() or media.get_element()
    bus = pipeline.get_bus()
    bus.enable_sync_message_emission()

    def again() -> bool:
        pipeline.seek_simple(Gst.Format.TIME, Gst.SeekFlags.SEGMENT, 0)
        return False  # GLib: do not call again

    def on_message(_bus, message):
        if message.type == Gst.MessageType.SEGMENT_DONE:
            GLib.idle_add(again)

    bus.connect("sync-message", on_message)
    media.connect("prepared", lambda m: pipeline.seek_simple(
        Gst.Format.TIME, Gst.SeekFlags.SEGMENT | Gst.SeekFlags.FLUSH, 0))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clip", help="an MP4 (or MOV) file holding H.264 video")
    parser.add_argument("--port", type=int, default=8554)
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--path", default="/cam")
    args = parser.parse_args()
    Gst.init(None)

    server = GstRtspServer.RTSPServer()
    server.set_address(args.address)
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch_line(args.clip))
    factory.set_shared(True)
    factory.connect("media-configure", lambda _f, media: loop_forever(media))
    server.get_mount_points().add_factory(args.path, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on {args.address}:{args.port}", file=sys.stderr)
        return 1
    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, lambda: loop.quit() or False)
    print(f"ready rtsp://{args.address}:{server.get_bound_port()}{args.path}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
