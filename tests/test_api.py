"""The README's Python examples run as written, and the public API is what the README says."""

import re
from pathlib import Path

import pytest

import irstream
from irstream.model.config import ModelConfig

REPO = Path(__file__).resolve().parent.parent
MARK = "<!-- api-example: tests/test_api.py runs this block -->"


def readme_examples() -> list[str]:
    text = (REPO / "README.md").read_text()
    return re.findall(re.escape(MARK) + r"\n```python\n(.*?)```", text, flags=re.S)


def test_the_readme_has_its_examples():
    assert len(readme_examples()) == 2


@pytest.mark.slow
@pytest.mark.parametrize("k", range(2))
def test_readme_example_runs(k, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    exec(compile(readme_examples()[k], f"README example {k + 1}", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    if k == 0:  # tracks of the synthetic drones, then the summary line
        assert any(line.startswith("frame ") and "track" in line for line in lines)
        assert lines[-1].startswith("100 frames at ")
    else:  # one line per frame of the 100-frame sample
        assert len(lines) == 100 and lines[-1].startswith("99 ")


@pytest.mark.slow
def test_the_stages_by_hand_track_as_irstream_run_does(monkeypatch):
    """irstream.Detector() + irstream.Tracker() on the frames, as the README's second example
    wires them, publish the tracks that the default pipeline publishes on the same video."""
    monkeypatch.chdir(REPO)
    video = "sample_videos/sky_drones.mkv"

    def records(tracks):
        return [(t["id"], round(t["x"], 3), round(t["y"], 3)) for t in tracks.published().to_records()]

    # One runtime named for both: "auto" times its candidates afresh where the machine is busy
    # and two timings may pick two runtimes, whose maps differ in the last bits.
    runtime = "openvino"
    by_run = [records(r.tracks) for r in irstream.Pipeline.from_toml(source=video, **{"model.runtime": runtime})]
    detector, tracker = irstream.Detector(ModelConfig(runtime=runtime)), irstream.Tracker()
    with irstream.open_source(video) as source:
        by_hand = [records(tracker.update(found.detections, frame.timestamp_s, image=found.prepared.unit))
                   for frame in source for found in [detector(frame)]]
    assert sum(map(len, by_run)) > 50
    assert by_hand == by_run


def test_public_names_resolve():
    for name in irstream.__all__:
        obj = getattr(irstream, name)  # the lazy import behind the name resolves
        assert obj.__module__.startswith("irstream."), name  # a class or function of ours, not a stand-in
    with pytest.raises(AttributeError):
        irstream.no_such_name  # noqa: B018


def test_a_pipeline_runs_once_and_stops_early_when_the_loop_breaks():
    pipeline = irstream.Pipeline.from_toml(source="synth:sky?seed=3&frames=30&width=160&height=128", **{"model.device": "cpu"})
    for result in pipeline:
        if result.frame.index == 4:
            break
    assert pipeline.summary.frames_processed == 5
    with pytest.raises(RuntimeError, match="runs once"):
        next(iter(pipeline))


def _module_imports() -> dict[str, set[str]]:
    """Module -> the irstream modules it imports, at load time or inside a function: a deferred
    import still ties the two modules together."""
    import ast

    graph = {}
    for path in (REPO / "irstream").rglob("*.py"):
        rel = path.relative_to(REPO).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("irstream"):
                deps.add(node.module)
                deps.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name.startswith("irstream"))
        graph[name] = deps
    return {m: {d for d in deps if d in graph and d != m} for m, deps in graph.items()}


def test_the_package_has_no_import_cycles():
    graph = _module_imports()
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(m, path):
        state[m] = 1
        for d in sorted(graph[m]):
            assert state.get(d) != 1, "import cycle: " + " -> ".join([*path, m, d])
            if d not in state:
                visit(d, [*path, m])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])


#: The stages, in the order data flows; none of them imports the layers that wire them.
STAGES = ("io", "detect", "model", "track", "sinks")
WIRING = ("irstream.config", "irstream.pipeline.run", "irstream.cli", "irstream.eval",
          "irstream.tools", "irstream.train")


def test_no_stage_imports_back_up_the_layers_that_wire_it():
    graph = _module_imports()
    up = {(m, d) for m, deps in graph.items() if m.split(".")[1:2] and m.split(".")[1] in STAGES
          for d in deps if d.startswith(WIRING)}
    assert not up, sorted(up)


def test_packages_are_one_level_deep():
    deep = [p for p in (REPO / "irstream").rglob("*.py")
            if len(p.relative_to(REPO / "irstream").parts) > 2]
    assert not deep, deep
