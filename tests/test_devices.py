"""Devices (``--device``) and batch shards (``--shard``, torchrun): parsing, arithmetic and the CLI contract.

CUDA itself cannot be exercised on the CPU-only CI; these tests check the parsing, the refusals and that the
library keeps every tensor on the device it is given (with PyTorch's shape-only ``meta`` device standing in
for a GPU), and ``benchmarks/bench_cuda.py`` checks the GPU paths where a GPU is present.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from srdeblur import cli, devices, inference
from srdeblur.devices import DeviceError, ShardError, distributed_shard, parse_device, parse_shard, shard_of
from srdeblur.io import write_image

from conftest import run_cli, textured_image

HAS_CUDA = torch.cuda.is_available()


# ------------------------------------------------------------------------------------------------ devices


@pytest.mark.parametrize("spec", ["cpu", "CPU", " cpu "])
def test_cpu_spellings(spec):
    assert parse_device(spec) == torch.device("cpu")


def test_auto_is_cuda_if_available_else_cpu():
    expected = torch.device("cuda", 0) if HAS_CUDA else torch.device("cpu")
    assert parse_device("auto", environ={}) == expected
    assert parse_device(None, environ={}) == expected


@pytest.mark.parametrize("spec", ["gpu", "tpu", "cuda:", "cuda:-1", "cuda:x", "cpu:0", "mps:1", "", "cuda:0:1"])
def test_unknown_device_is_refused_in_one_line(spec):
    with pytest.raises(DeviceError) as info:
        parse_device(spec)
    assert "\n" not in str(info.value) and "auto, cpu, cuda, cuda:N, mps" in str(info.value)


@pytest.mark.skipif(HAS_CUDA, reason="checks the refusal on a machine without CUDA")
@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "cuda:7"])
def test_cuda_refused_without_cuda(spec):
    with pytest.raises(DeviceError, match="CUDA is not available"):
        parse_device(spec)


def test_cuda_ordinal_beyond_the_gpus_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert parse_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(DeviceError, match=r"no such GPU \(this machine has 2: cuda:0..cuda:1\)"):
        parse_device("cuda:2")
    # Under torchrun, auto and a bare "cuda" take the local rank's GPU (wrapping if ranks outnumber GPUs).
    assert parse_device("auto", environ={"LOCAL_RANK": "1"}) == torch.device("cuda", 1)
    assert parse_device("cuda", environ={"LOCAL_RANK": "3"}) == torch.device("cuda", 1)
    assert parse_device("cuda:0", environ={"LOCAL_RANK": "1"}) == torch.device("cuda", 0)


def test_mps_refused_where_absent(monkeypatch):
    monkeypatch.setattr(devices, "_mps_available", lambda: False)
    with pytest.raises(DeviceError, match="no Apple MPS device"):
        parse_device("mps")


def test_using_device_sets_and_restores_the_library_default():
    assert devices.default_device() == torch.device("cpu")
    with devices.using_device("cpu") as device:
        assert device == devices.default_device() == torch.device("cpu")
    with pytest.raises(DeviceError):
        with devices.using_device("tpu"):
            pass
    assert devices.default_device() == torch.device("cpu")


def test_library_refuses_an_unknown_device_before_any_work():
    image = textured_image(16, 16)
    with pytest.raises(DeviceError):
        inference.upscale(image, scale=2, method="bicubic", device="tpu")
    with pytest.raises(ValueError):
        inference.deblur(image, method="wiener", psf=torch.ones(3, 3) / 9, device="cuda:x")


def test_cpu_device_gives_the_same_result_as_the_default():
    image = textured_image(20, 24)
    psf = torch.ones(3, 3) / 9
    assert torch.equal(inference.upscale(image, scale=2, method="bicubic", device="cpu"),
                       inference.upscale(image, scale=2, method="bicubic"))
    assert torch.equal(inference.deblur(image, method="wiener", psf=psf, device=torch.device("cpu")),
                       inference.deblur(image, method="wiener", psf=psf))


def test_on_device_moves_pieces_and_brings_results_back_to_the_cpu():
    """The wrapper used for every non-CPU device: the function sees its input on the device, and tensors it
    creates land there too; the result comes back as float32 on the CPU. ``meta`` (no data) stands in for
    a GPU: mixing a CPU tensor into it would fail."""
    seen = []

    def function(piece: torch.Tensor) -> torch.Tensor:
        created = torch.ones(piece.shape[-2:])  # a factory call inside the function, as the FFT helpers do
        seen.append((piece.device.type, created.device.type))
        return (piece * created).half()

    # The device's output cannot be copied to the CPU from "meta" (no data), so check the device side only.
    wrapped = inference._on_device(function, torch.device("meta"))
    with pytest.raises(NotImplementedError):
        wrapped(torch.zeros(1, 3, 4, 5))
    assert seen == [("meta", "meta")]
    assert inference._on_device(function, torch.device("cpu")) is function


def test_network_autocast_per_device():
    cpu = devices.network_autocast(torch.device("cpu"), "auto", cpu_bfloat16=False)
    assert cpu.device == "cpu" and not cpu._enabled
    assert devices.network_autocast(torch.device("cpu"), "auto", cpu_bfloat16=True).fast_dtype == torch.bfloat16


# ------------------------------------------------------------------------------------------------ shards


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("items", [0, 1, 4, 10, 13])
def test_shards_partition_the_plan(count, items):
    plan = [f"job{i:02d}" for i in range(items)]
    shards = [shard_of(plan, index, count) for index in range(count)]
    assert sorted(job for shard in shards for job in shard) == plan  # every job exactly once
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    assert all(shard == sorted(shard) for shard in shards)  # plan order kept


@pytest.mark.parametrize(("spec", "expected"), [("1/1", (0, 1)), ("1/3", (0, 3)), ("3/3", (2, 3)), (" 2 / 5 ", (1, 5))])
def test_parse_shard(spec, expected):
    assert parse_shard(spec) == expected


@pytest.mark.parametrize("spec", ["0/3", "4/3", "a/b", "1/0", "0/0", "3", "1/2/3", "-1/3", "1.5/3", ""])
def test_bad_shard_specs(spec):
    with pytest.raises(ShardError):
        parse_shard(spec)


def test_distributed_shard_from_the_environment():
    assert distributed_shard({}) == (0, 1)
    assert distributed_shard({"RANK": "2", "WORLD_SIZE": "4"}) == (2, 4)
    for bad in ({"RANK": "4", "WORLD_SIZE": "4"}, {"RANK": "x", "WORLD_SIZE": "2"}, {"WORLD_SIZE": "0"}):
        with pytest.raises(ShardError):
            distributed_shard(bad)


@pytest.mark.parametrize(("count", "world"), [(1, 2), (2, 2), (3, 2), (2, 3)])
def test_shard_and_ranks_compose_into_a_partition(count, world, monkeypatch):
    """--shard K/N under torchrun: each (shard, rank) pair takes a disjoint share; together, the whole plan."""
    plan = list(range(17))
    taken = []
    for shard in range(1, count + 1):
        for rank in range(world):
            monkeypatch.setenv("RANK", str(rank))
            monkeypatch.setenv("WORLD_SIZE", str(world))
            index, total, _ = cli._parse_shard(f"{shard}/{count}")
            mine = shard_of(plan, index, total)
            assert set(mine) <= set(plan[shard - 1 :: count])  # inside its own --shard
            taken.extend(mine)
    assert sorted(taken) == plan


# ------------------------------------------------------------------------------------------------ CLI


def make_folder(folder: Path, count: int, size: int = 8) -> list[str]:
    folder.mkdir(parents=True)
    names = [f"img{i:02d}.png" for i in range(count)]
    for i, name in enumerate(names):
        write_image(folder / name, textured_image(size, size + 2, seed=i))
    return names


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    return lines[0]


@pytest.mark.parametrize("spec", ["0/3", "4/3", "a/b"])
def test_cli_bad_shard_exits_2_and_writes_nothing(tmp_path, capsys, spec):
    make_folder(tmp_path / "in", 3)
    code, out, err = run_cli(capsys, "upscale", tmp_path / "in", "-o", tmp_path / "out", "--method", "bicubic",
                             "--shard", spec)
    assert code == 2 and out == ""
    assert "--shard" in one_error_line(err)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["upscale", "deblur"])
@pytest.mark.parametrize("spec", ["cuda", "cuda:5", "tpu"])
def test_cli_unusable_device_exits_2_and_writes_nothing(tmp_path, capsys, command, spec):
    if HAS_CUDA and spec == "cuda":
        pytest.skip("CUDA is available here")
    make_folder(tmp_path / "in", 2)
    extra = ["--method", "bicubic"] if command == "upscale" else ["--method", "wiener", "--psf", "gaussian:1"]
    code, out, err = run_cli(capsys, command, tmp_path / "in", "-o", tmp_path / "out", *extra, "--device", spec)
    assert code == 2 and out == ""
    assert "device" in one_error_line(err)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("spec", "message"), [("cuda", "CUDA is not available"),
                                               ("cuda:5", "CUDA is not available|no such GPU"),
                                               ("tpu", "unknown device"), ("cuda:x", "unknown device")])
def test_cli_train_refuses_an_unusable_device_and_writes_nothing(tmp_path, capsys, spec, message):
    if HAS_CUDA and spec == "cuda":
        pytest.skip("CUDA is available here")
    make_folder(tmp_path / "in", 2)
    code, out, err = run_cli(capsys, "train", "--data", tmp_path / "in", "--out", tmp_path / "run", "--steps", "1",
                             "--device", spec)
    assert code == 2 and out == ""
    assert re.search(message, one_error_line(err))
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(HAS_CUDA, reason="checks the refusal on a machine without CUDA")
def test_eval_and_compare_refuse_cuda_without_it(tmp_path, capsys):
    code, _, err = run_cli(capsys, "eval", "--device", "cuda", "--method", "bicubic")
    assert code == 2 and "CUDA is not available" in one_error_line(err)
    truth = tmp_path / "truth.png"
    write_image(truth, textured_image(32, 32))
    code, _, err = run_cli(capsys, "compare", "--truth", truth, "--method", "bicubic", "-o", tmp_path / "strip.png",
                           "--device", "cuda")
    assert code == 2 and "CUDA is not available" in one_error_line(err)
    assert not (tmp_path / "strip.png").exists()


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5])
def test_cli_shards_process_every_input_exactly_once(tmp_path, capsys, count):
    names = make_folder(tmp_path / "in", 7)
    processed = []
    for index in range(1, count + 1):
        code, out, err = run_cli(capsys, "upscale", tmp_path / "in", "-o", tmp_path / "out", "-s", "2", "--method",
                                 "bicubic", "--shard", f"{index}/{count}", "--json", "--quiet")
        assert code == 0, err
        processed.extend(Path(r["input"]).name for r in json.loads(out)["results"] if r["status"] == "done")
    assert sorted(processed) == names
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == names


def test_cli_shard_still_checks_the_whole_plan(tmp_path, capsys):
    """A collision between two inputs is refused in every shard, even one that holds neither of them."""
    make_folder(tmp_path / "in", 3)
    (tmp_path / "in" / "img00.jpg").write_bytes((tmp_path / "in" / "img00.png").read_bytes())
    for index in (1, 2, 3):
        code, _, err = run_cli(capsys, "upscale", tmp_path / "in", "-o", tmp_path / "out", "--method", "bicubic",
                               "--format", "png", "--shard", f"{index}/3")
        assert code == 2 and "would both be written" in one_error_line(err)
    assert not (tmp_path / "out").exists()


def test_torchrun_two_processes_write_each_output_once(tmp_path):
    """``torchrun --nproc_per_node 2``: the two ranks split the folder; each prints its own summary."""
    names = make_folder(tmp_path / "in", 10, size=6)
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    environment.pop("RANK", None)
    environment.pop("WORLD_SIZE", None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "--log-dir", str(tmp_path / "logs"), "--redirects", "1",
               "-m", "srdeblur", "upscale", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-s", "2",
               "--method", "bicubic", "--json", "--quiet"]
    finished = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=300)
    assert finished.returncode == 0, finished.stderr[-2000:]
    summaries = sorted((tmp_path / "logs").rglob("stdout.log"))
    assert len(summaries) == 2
    per_rank = [[Path(r["input"]).name for r in json.loads(path.read_text())["results"]] for path in summaries]
    assert all(len(done) == 5 for done in per_rank)
    assert sorted(per_rank[0] + per_rank[1]) == names  # every input once, none twice
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == names


def test_library_default_device_is_what_using_device_set(monkeypatch):
    """Callers that pass no device (evaluation, compare --method) compute on ``using_device``'s device: with
    ``meta`` standing in for a GPU, the work goes there (and cannot come back, having no data)."""
    image = textured_image(12, 12)
    monkeypatch.setattr(inference, "default_device", lambda: torch.device("meta"))
    with pytest.raises(NotImplementedError):
        inference.upscale(image, scale=2, method="bicubic")


def test_eval_runs_on_the_cpu_device(capsys):
    code, out, err = run_cli(capsys, "eval", "--method", "bicubic", "--limit", "1", "--device", "cpu", "--json",
                             "--quiet")
    assert code == 0, err
    assert json.loads(out)["rows"]


# ------------------------------------------------------------------------------------------------ host memory


def test_keep_freed_memory_raises_both_glibc_thresholds(monkeypatch):
    calls = []

    class FakeLibc:
        def mallopt(self, parameter, value):
            calls.append((parameter, value))
            return 1

    monkeypatch.setattr(devices.ctypes, "CDLL", lambda name: FakeLibc())
    assert devices.keep_freed_memory(below_bytes=1 << 20) is True
    assert calls == [(-3, 1 << 20), (-1, 2 << 20)]  # M_MMAP_THRESHOLD, then M_TRIM_THRESHOLD at twice it


@pytest.mark.parametrize("missing", [OSError("no libc.so.6"), AttributeError("mallopt")])
def test_keep_freed_memory_changes_nothing_without_glibc(monkeypatch, missing):
    def load(name):
        raise missing

    monkeypatch.setattr(devices.ctypes, "CDLL", load)
    assert devices.keep_freed_memory() is False


def test_keep_freed_memory_reports_a_refused_setting(monkeypatch):
    class RefusingLibc:
        def mallopt(self, parameter, value):
            return 0

    monkeypatch.setattr(devices.ctypes, "CDLL", lambda name: RefusingLibc())
    assert devices.keep_freed_memory() is False


@pytest.mark.skipif(not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None,
                    reason="glibc only")
def test_keep_freed_memory_takes_effect_on_glibc():
    assert devices.keep_freed_memory() is True
