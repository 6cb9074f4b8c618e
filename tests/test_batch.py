"""Tests for srdeblur.batch: input -> output mapping rules and the fault-tolerant batch runner."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from srdeblur.batch import Job, JobResult, UsageError, plan_jobs, run_jobs
from srdeblur.io import Image, read_image, write_image


def _png(path: Path, seed: int = 0, size: tuple[int, int] = (6, 8)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    write_image(path, torch.rand(1, 3, *size, generator=generator))
    return path


def _invert(image: Image) -> Image:
    return Image(1 - image.pixels, image.alpha, image.meta)


def _targets(jobs: list[Job]) -> list[tuple[Path, Path]]:
    return [(job.source, job.target) for job in jobs]


# ------------------------------------------------------------------------------------------------ plan_jobs


def test_single_file_default_sibling_name(tmp_path):
    source = _png(tmp_path / "photo.png")
    assert _targets(plan_jobs([source], output=None, suffix="_x4")) == [(source, tmp_path / "photo_x4.png")]


def test_single_file_keeps_its_suffix_case_and_type(tmp_path):
    source = _png(tmp_path / "scan.PNG")
    assert plan_jobs([source], output=None, suffix="_deblurred")[0].target == tmp_path / "scan_deblurred.PNG"


def test_single_file_with_output_file(tmp_path):
    source = _png(tmp_path / "photo.png")
    target = tmp_path / "elsewhere" / "big.png"
    assert _targets(plan_jobs([source], output=target, suffix="_x4")) == [(source, target)]


def test_single_file_with_existing_output_folder(tmp_path):
    source = _png(tmp_path / "photo.png")
    folder = tmp_path / "out"
    folder.mkdir()
    assert _targets(plan_jobs([source], output=folder, suffix="_x2")) == [(source, folder / "photo.png")]


def test_folder_default_sibling_folder_keeps_names(tmp_path):
    folder = tmp_path / "shots"
    a, b = _png(folder / "a.png"), _png(folder / "b.jpg")
    (folder / "notes.txt").write_text("not an image")
    jobs = plan_jobs([folder], output=None, suffix="_x2")
    assert _targets(jobs) == [(a, tmp_path / "shots_x2" / "a.png"), (b, tmp_path / "shots_x2" / "b.jpg")]


def test_folder_with_output_folder(tmp_path):
    folder = tmp_path / "shots"
    a = _png(folder / "a.png")
    out = tmp_path / "results"  # need not exist yet
    assert _targets(plan_jobs([folder], output=out, suffix="_x2")) == [(a, out / "a.png")]


def test_recursive_keeps_the_tree_and_flat_does_not_descend(tmp_path):
    folder = tmp_path / "shots"
    top = _png(folder / "top.png")
    deep = _png(folder / "day1" / "morning" / "deep.png")
    out = tmp_path / "out"
    assert _targets(plan_jobs([folder], output=out, suffix="_x2", recursive=True)) == [
        (deep, out / "day1" / "morning" / "deep.png"),
        (top, out / "top.png"),
    ]
    assert _targets(plan_jobs([folder], output=out, suffix="_x2")) == [(top, out / "top.png")]


def test_hidden_files_and_folders_are_skipped(tmp_path):
    folder = tmp_path / "shots"
    visible = _png(folder / "visible.png")
    _png(folder / ".hidden.png")
    _png(folder / ".cache" / "thumb.png")
    jobs = plan_jobs([folder], output=tmp_path / "out", suffix="_x2", recursive=True)
    assert [job.source for job in jobs] == [visible]


def test_several_files_without_output_get_sibling_names(tmp_path):
    a, b = _png(tmp_path / "a.png"), _png(tmp_path / "sub" / "b.png")
    assert _targets(plan_jobs([a, b], output=None, suffix="_x2")) == [
        (a, tmp_path / "a_x2.png"),
        (b, tmp_path / "sub" / "b_x2.png"),
    ]


def test_two_inputs_to_one_output_is_a_usage_error(tmp_path):
    a, b = _png(tmp_path / "one" / "img.png"), _png(tmp_path / "two" / "img.png")
    with pytest.raises(UsageError, match="both be written"):
        plan_jobs([a, b], output=tmp_path / "out", suffix="_x2")


def test_output_equal_to_input_file_is_a_usage_error(tmp_path):
    source = _png(tmp_path / "photo.png")
    with pytest.raises(UsageError, match="overwrite the input"):
        plan_jobs([source], output=source, suffix="_x2")
    with pytest.raises(UsageError, match="overwrite the input"):  # the same file through another spelling
        plan_jobs([source], output=tmp_path / "." / "photo.png", suffix="_x2")


def test_output_folder_equal_to_input_folder_is_a_usage_error(tmp_path):
    folder = tmp_path / "shots"
    _png(folder / "a.png")
    with pytest.raises(UsageError, match="overwrite the input"):
        plan_jobs([folder], output=folder, suffix="_x2")


def test_missing_input_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="no such file"):
        plan_jobs([tmp_path / "absent.png"], output=None, suffix="_x2")


def test_no_input_is_a_usage_error():
    with pytest.raises(UsageError):
        plan_jobs([], output=None, suffix="_x2")


def test_several_inputs_with_an_existing_file_output_is_a_usage_error(tmp_path):
    a, b = _png(tmp_path / "a.png"), _png(tmp_path / "b.png")
    existing = _png(tmp_path / "c.png")
    with pytest.raises(UsageError, match="must be a folder"):
        plan_jobs([a, b], output=existing, suffix="_x2")


def test_current_folder_as_input(tmp_path, monkeypatch):
    folder = tmp_path / "shots"
    _png(folder / "a.png")
    monkeypatch.chdir(folder)
    jobs = plan_jobs([Path(".")], output=None, suffix="_x2")
    assert [job.target.resolve() for job in jobs] == [tmp_path / "shots_x2" / "a.png"]


def test_parent_folder_as_input_goes_to_a_sibling(tmp_path, monkeypatch):
    folder = tmp_path / "shots"
    _png(folder / "a.png")
    (folder / "sub").mkdir()
    monkeypatch.chdir(folder / "sub")
    jobs = plan_jobs([Path("..")], output=None, suffix="_x2")
    assert [job.target.resolve() for job in jobs] == [tmp_path / "shots_x2" / "a.png"]


# ------------------------------------------------------------------------------------------------ run_jobs


def test_run_jobs_writes_restored_images(tmp_path):
    source = _png(tmp_path / "a.png", size=(5, 7))
    jobs = plan_jobs([source], output=None, suffix="_inv")
    (result,) = run_jobs(jobs, _invert)
    assert result.status == "done" and result.message == "" and result.seconds >= 0
    written = read_image(tmp_path / "a_inv.png").pixels
    torch.testing.assert_close(written, 1 - read_image(source).pixels, rtol=0, atol=1 / 255 + 1e-6)


def test_existing_output_fails_unless_overwrite_or_skip(tmp_path):
    source = _png(tmp_path / "a.png", seed=1)
    target = _png(tmp_path / "a_inv.png", seed=2)
    before = target.read_bytes()
    jobs = plan_jobs([source], output=None, suffix="_inv")

    (failed,) = run_jobs(jobs, _invert)
    assert failed.status == "failed" and "exists" in failed.message
    assert target.read_bytes() == before

    (skipped,) = run_jobs(jobs, _invert, skip_existing=True)
    assert skipped.status == "skipped"
    assert target.read_bytes() == before

    (done,) = run_jobs(jobs, _invert, overwrite=True)
    assert done.status == "done"
    assert target.read_bytes() != before
    torch.testing.assert_close(read_image(target).pixels, 1 - read_image(source).pixels, rtol=0, atol=1 / 255 + 1e-6)


def test_bad_file_fails_alone_and_inputs_are_never_modified(tmp_path):
    folder = tmp_path / "shots"
    _png(folder / "a.png", seed=1)
    (folder / "b.png").write_text("this is text, not a PNG")
    _png(folder / "c.png", seed=3)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    seen: list[JobResult] = []
    jobs = plan_jobs([folder], output=None, suffix="_inv")
    results = run_jobs(jobs, _invert, on_result=seen.append)
    statuses = [(r.job.source.name, r.status) for r in results]
    assert statuses == [("a.png", "done"), ("b.png", "failed"), ("c.png", "done")]
    assert seen == results
    assert "b.png" in results[1].message and "\n" not in results[1].message
    out = tmp_path / "shots_inv"
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "c.png"]
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_restore_errors_are_recorded_with_a_one_line_message(tmp_path):
    source = _png(tmp_path / "a.png")

    def broken(image: Image) -> Image:
        raise ValueError("first line\nsecond line")

    (result,) = run_jobs(plan_jobs([source], output=None, suffix="_x"), broken)
    assert result.status == "failed" and result.message == "first line"
    assert not (tmp_path / "a_x.png").exists()


def test_unwritable_target_fails_that_job_only(tmp_path):
    a, b = _png(tmp_path / "a.png"), _png(tmp_path / "b.png")
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    jobs = [Job(a, blocker / "a.png"), Job(b, tmp_path / "out" / "b.png")]
    results = run_jobs(jobs, _invert)
    assert [r.status for r in results] == ["failed", "done"]
    assert (tmp_path / "out" / "b.png").is_file()


def test_max_pixels_limit_fails_large_images(tmp_path):
    small, large = _png(tmp_path / "small.png", size=(4, 4)), _png(tmp_path / "large.png", size=(10, 10))
    jobs = [Job(small, tmp_path / "o" / "small.png"), Job(large, tmp_path / "o" / "large.png")]
    results = run_jobs(jobs, _invert, max_pixels=50)
    assert [r.status for r in results] == ["done", "failed"]


def test_any_restore_exception_is_recorded(tmp_path):
    a, b = _png(tmp_path / "a.png"), _png(tmp_path / "b.png")
    calls = []

    def flaky(image: Image) -> Image:
        calls.append(1)
        if len(calls) == 1:
            raise TypeError("unexpected")
        return image

    results = run_jobs([Job(a, tmp_path / "o" / "a.png"), Job(b, tmp_path / "o" / "b.png")], flaky)
    assert [r.status for r in results] == ["failed", "done"]
