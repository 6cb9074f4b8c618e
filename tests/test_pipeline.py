"""The batch's reader/writer pipeline (:func:`srdeblur.batch.run_jobs`) and the deferred folder syncs."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from srdeblur import io
from srdeblur.batch import plan_jobs, process_image, run_jobs
from srdeblur.inference import upscale
from srdeblur.io import write_image

from conftest import textured_image


def make_inputs(folder: Path, count: int) -> None:
    folder.mkdir()
    for i in range(count):
        write_image(folder / f"img{i}.png", textured_image(8, 10, seed=i))
    (folder / "img2.png").write_bytes(b"not a png")  # one bad file


def bicubic(image):
    return process_image(image, lambda pixels: upscale(pixels, scale=2, method="bicubic"))


def test_pipeline_matches_sequential_run(tmp_path):
    make_inputs(tmp_path / "in", 5)
    outputs = {}
    for pipeline in (False, True):
        out = tmp_path / f"out_{pipeline}"
        out.mkdir()
        write_image(out / "img3.png", textured_image(4, 4))  # an existing output: skipped
        jobs = plan_jobs([tmp_path / "in"], output=out, suffix="_x2")
        results = run_jobs(jobs, bicubic, skip_existing=True, pipeline=pipeline)
        assert [r.job for r in results] == jobs
        assert [r.status for r in results] == ["done", "done", "failed", "skipped", "done"]
        outputs[pipeline] = {p.name: p.read_bytes() for p in sorted(out.iterdir())}
    assert outputs[True] == outputs[False]


def test_callbacks_and_restore_run_on_the_calling_thread_in_order(tmp_path):
    make_inputs(tmp_path / "in", 6)
    jobs = plan_jobs([tmp_path / "in"], output=tmp_path / "out", suffix="_x2")
    caller = threading.get_ident()
    events = []

    def restore(image):
        assert threading.get_ident() == caller
        return bicubic(image)

    run_jobs(jobs, restore, on_start=lambda job: events.append(("start", job.source.name, threading.get_ident())),
             on_result=lambda result: events.append(("result", result.job.source.name, threading.get_ident())))
    assert {thread for *_, thread in events} == {caller}
    assert [name for kind, name, _ in events if kind == "result"] == [job.source.name for job in jobs]
    assert [name for kind, name, _ in events if kind == "start"] == [j.source.name for j in jobs if j.source.name != "img2.png"]


def test_interrupt_reports_finished_outputs_and_leaves_no_partial_file(tmp_path):
    make_inputs(tmp_path / "in", 6)
    jobs = plan_jobs([tmp_path / "in"], output=tmp_path / "out", suffix="_x2")
    reported = []

    def restore(image):
        if restore.calls == 3:  # Ctrl-C during the fourth restoration
            raise KeyboardInterrupt
        restore.calls += 1
        return bicubic(image)

    restore.calls = 0
    with pytest.raises(KeyboardInterrupt):
        run_jobs(jobs, restore, on_result=reported.append)
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert [r.job.target.name for r in reported if r.status == "done"] == written  # reported == complete on disk
    assert not any(name.startswith(".") for name in written)  # no temporary file left
    assert len(reported) <= 4


def test_folders_are_synced_once_per_batch(tmp_path, monkeypatch):
    make_inputs(tmp_path / "in", 5)
    synced = []
    monkeypatch.setattr(io, "_sync_folder_now", synced.append)
    jobs = plan_jobs([tmp_path / "in"], output=tmp_path / "out", suffix="_x2")
    run_jobs(jobs, bicubic)
    assert synced == [tmp_path / "out"]  # 4 files written, one folder sync at the end
    write_image(tmp_path / "single.png", textured_image(4, 4))  # outside a batch: synced at once
    assert synced == [tmp_path / "out", tmp_path]


def test_a_large_output_is_written_before_the_next_restoration(tmp_path, monkeypatch):
    from srdeblur import batch

    make_inputs(tmp_path / "in", 4)
    monkeypatch.setattr(batch, "_PIPELINE_LARGE_OUTPUT_PIXELS", 100)  # every 16x20 output counts as large
    jobs = plan_jobs([tmp_path / "in"], output=tmp_path / "out", suffix="_x2")
    written_before = []

    def restore(image):
        written_before.append(len(list((tmp_path / "out").glob("*.png"))) if (tmp_path / "out").exists() else 0)
        return bicubic(image)

    results = run_jobs(jobs, restore)
    assert [r.status for r in results] == ["done", "done", "failed", "done"]
    assert written_before == [0, 1, 2]  # each output was on disk before the next image was restored
