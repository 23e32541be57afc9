"""File-mode streaming (stream_files) with a delay-line fake converter: the written
files are gain * input (time alignment through the whole stream), whatever the push
sizes; min_seconds keeps streaming without a reset; one bad input is one line naming
it; deadline misses and the report's numbers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from stream_fakes import DelayConverter

from voiceconv.audio.preparation import Preparation
from voiceconv.conversion.stream_runner import (
    BlockTimer,
    StreamReport,
    random_push_sizes,
    resident_bytes,
    stream_files,
)
from voiceconv.errors import ConfigError

SR = 8000


def tone(seconds: float, freq: float = 220.0, seed: int = 0) -> np.ndarray:
    """A tone with a little noise: never silent, different per seed."""
    t = np.arange(int(seconds * SR)) / SR
    rng = np.random.default_rng(seed)
    return (0.4 * np.sin(2 * np.pi * freq * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def write(path: Path, wav: np.ndarray, sr: int = SR, subtype: str = "FLOAT") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wav, sr, subtype=subtype)
    return path


@pytest.fixture
def three(tmp_path: Path) -> list[Path]:
    """Three inputs of lengths that are not multiples of the block (0.33, 0.5, 0.2104 s)."""
    return [write(tmp_path / "in" / f"u{i}.wav", tone(s, 150 + 90 * i, seed=i))
            for i, s in enumerate((0.33, 0.5, 0.2104))]


def read(path: Path) -> np.ndarray:
    wav, sr = sf.read(path, dtype="float32")
    assert sr == SR
    return wav


def test_written_files_are_gain_times_input(three: list[Path], tmp_path: Path) -> None:
    fake = DelayConverter(SR, block_samples=80, latency_samples=230, gain=0.5)
    out = tmp_path / "out"
    rep = stream_files(fake, three, out)
    assert [f.status for f in rep.files] == ["converted"] * 3
    assert sorted(p.name for p in out.iterdir()) == ["u0.wav", "u1.wav", "u2.wav"]  # no temp files
    for src in three:
        # 16-bit PCM output: within half an LSB of gain * input
        np.testing.assert_allclose(read(out / src.name), 0.5 * read(src), atol=1 / 32768 + 1e-7)
    assert rep.passes == 1 and fake.resets == 1
    total = sum(len(read(p)) for p in three)
    assert rep.seconds_streamed == pytest.approx(total / SR)
    assert rep.blocks == -(-total // 80)
    assert rep.block_ms == pytest.approx(1000 * total / SR / rep.blocks)
    assert rep.latency_ms == pytest.approx(1000 * 230 / SR)
    assert rep.streamed == three


def test_random_push_sizes_give_the_same_output(three: list[Path], tmp_path: Path) -> None:
    fixed = stream_files(DelayConverter(SR, 80, 200, gain=0.7), three, tmp_path / "fixed")
    sizes: list[int] = []
    draw = random_push_sizes(1234, 80)

    def size() -> int:
        sizes.append(draw())
        return sizes[-1]

    rnd = stream_files(DelayConverter(SR, 80, 200, gain=0.7), three, tmp_path / "random",
                       push_samples=size)
    assert 0 in sizes and max(sizes) > 80 and len(set(sizes)) > 10  # empty, short and long pushes
    assert rnd.blocks == len(sizes) != fixed.blocks
    for src in three:
        assert (tmp_path / "random" / src.name).read_bytes() == (tmp_path / "fixed" / src.name).read_bytes()
    gen = stream_files(DelayConverter(SR, 80, 200, gain=0.7), three, tmp_path / "gen",
                       push_samples=np.random.default_rng(5))
    assert gen.blocks != fixed.blocks
    for src in three:
        assert (tmp_path / "gen" / src.name).read_bytes() == (tmp_path / "fixed" / src.name).read_bytes()


def test_min_seconds_loops_without_reset_and_writes_the_first_pass(three: list[Path], tmp_path: Path) -> None:
    fake = DelayConverter(SR, 80, 200, gain=2.0)  # gain 2 clips: the file is clip(2 * input)
    total = sum(len(read(p)) for p in three)
    blocks: list[int] = []
    rep = stream_files(fake, three, tmp_path / "out", min_seconds=3.0, on_block=lambda b: blocks.append(b.samples))
    assert rep.passes == int(np.ceil(3.0 * SR / total)) >= 3
    assert fake.resets == 1  # once before the stream, never during it
    assert fake.pushed == rep.passes * total == sum(blocks)
    assert rep.seconds_streamed == pytest.approx(rep.passes * total / SR)
    for src in three:
        np.testing.assert_allclose(read(tmp_path / "out" / src.name), np.clip(2 * read(src), -1, 1),
                                   atol=1 / 32768 + 1e-7)
    assert 0 < rep.rss_start_mb <= rep.rss_max_mb
    assert rep.rss_10pct_mb <= rep.rss_max_mb and rep.rss_end_mb <= rep.rss_max_mb


def test_a_corrupt_input_is_one_line_and_the_rest_are_written(three: list[Path], tmp_path: Path) -> None:
    bad = tmp_path / "in" / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00")
    text = tmp_path / "in" / "notes.wav"
    text.write_text("hello\n")
    missing = tmp_path / "in" / "gone.wav"
    lines: list[str] = []
    rep = stream_files(DelayConverter(SR, 80, 200), [three[0], bad, three[1], text, missing, three[2]],
                       tmp_path / "out", on_file=lambda r: lines.append(r.message) if r.status == "failed" else None)
    assert [f.source for f in rep.failed] == [bad, text, missing]
    assert lines[0].startswith(f"{bad}: ") and "corrupt" in lines[0]
    assert lines[1].startswith(f"{text}: ") and "not an audio file" in lines[1]
    assert lines[2].startswith(f"{missing}: ") and "not found" in lines[2]
    assert all("\n" not in ln for ln in lines)
    assert rep.streamed == three
    for src in three:  # the stream closed over the gap: still aligned
        np.testing.assert_allclose(read(tmp_path / "out" / src.name), read(src), atol=1 / 32768 + 1e-7)


def test_resampled_and_stereo_inputs(tmp_path: Path) -> None:
    stereo = np.stack([tone(0.4), tone(0.4, 300, seed=1)], axis=1)
    src = write(tmp_path / "in" / "st.flac", stereo, sr=16000, subtype="PCM_16")
    rep = stream_files(DelayConverter(SR, 80, 200), [src], tmp_path / "out")
    assert rep.written and sf.info(tmp_path / "out" / "st.wav").samplerate == SR
    assert sf.info(tmp_path / "out" / "st.wav").frames == round(len(stereo) * SR / 16000)


def test_never_overwrites_an_input_and_keeps_existing_outputs(three: list[Path], tmp_path: Path) -> None:
    folder = three[0].parent
    flac = write(folder / "other.flac", tone(0.2, seed=9), subtype="PCM_16")
    before = {p: p.read_bytes() for p in folder.iterdir()}
    rep = stream_files(DelayConverter(SR, 80, 200), [*three, flac], folder)  # out_dir = input folder
    assert [f.status for f in rep.files] == ["failed"] * 3 + ["converted"]
    assert "would overwrite input" in rep.files[0].message
    assert all(p.read_bytes() == data for p, data in before.items())
    assert (folder / "other.wav").exists()  # names differ: allowed
    # an existing output is kept unless overwrite
    out = tmp_path / "out"
    out.mkdir()
    (out / "u1.wav").write_bytes(b"by hand")
    rep = stream_files(DelayConverter(SR, 80, 200), three, out)
    assert [f.status for f in rep.files] == ["converted", "skipped", "converted"]
    assert (out / "u1.wav").read_bytes() == b"by hand"
    assert rep.streamed == three  # a skipped file is still part of the stream
    rep = stream_files(DelayConverter(SR, 80, 200), three, out, overwrite=True)
    assert [f.status for f in rep.files] == ["converted"] * 3
    # two inputs with one stem cannot share an output
    twin = write(tmp_path / "twin" / "u0.wav", tone(0.2, seed=3))
    rep = stream_files(DelayConverter(SR, 80, 200), [three[0], twin], tmp_path / "out2")
    assert [f.status for f in rep.files] == ["converted", "failed"]
    assert "same file name" in rep.files[1].message


def test_deadline_misses_are_counted(three: list[Path]) -> None:
    block_s = 80 / SR  # 10 ms
    fake = DelayConverter(SR, 80, 200, sleep_on={3: 3 * block_s, 7: 3 * block_s})
    rows = []
    rep = stream_files(fake, three[:1], None, on_block=rows.append)
    assert rows[3].missed and rows[7].missed
    assert rep.deadline_misses >= 2  # a loaded machine may add more, never fewer
    assert rep.compute_max_ms >= 3 * 1000 * block_s
    assert rep.files == [] and rep.streamed == three[:1]  # measured, nothing written


def test_report_json_and_summary(three: list[Path], tmp_path: Path) -> None:
    rep = stream_files(DelayConverter(SR, 80, 200), three, tmp_path / "out")
    data = json.loads(json.dumps(rep.to_dict()))
    for key in ("seconds_streamed", "blocks", "compute_median_ms", "compute_p99_ms", "compute_max_ms",
                "block_ms", "rtf_median", "rtf_overall", "deadline_misses", "latency_ms",
                "rss_10pct_mb", "rss_end_mb", "rss_max_mb", "passes"):
        assert key in data, key
    assert data["files"][0]["status"] == "converted" and data["files"][0]["source"] == str(three[0])
    text = rep.summary()
    assert "deadline misses" in text and "p99" in text and "resident memory" in text


def test_block_timer_statistics() -> None:
    timer = BlockTimer(1000)
    for ms in (1, 2, 3, 50):
        timer.add(10, ms / 1000, 0.0)  # 10 ms blocks: the 50 ms one is a miss
    timer.add(0, 0.5, 0.0)  # an empty push has no deadline
    f = timer.fields()
    assert f["blocks"] == 5 and f["deadline_misses"] == 1
    assert f["compute_median_ms"] == pytest.approx(3.0) and f["compute_max_ms"] == pytest.approx(500.0)
    assert f["rtf_median"] == pytest.approx(0.25) and f["block_ms"] == pytest.approx(10.0)
    assert f["rtf_overall"] == pytest.approx(0.556 / 0.04)
    assert StreamReport().to_dict()["blocks"] == 0


def test_contract_violations_and_bad_options(three: list[Path]) -> None:
    class Short(DelayConverter):
        def flush(self) -> np.ndarray:
            return super().flush()[:-1]

    with pytest.raises(RuntimeError, match="as long as the input"):
        stream_files(Short(SR, 80, 200), three[:1], None)
    with pytest.raises(ConfigError):
        stream_files(DelayConverter(SR, 80, 200), three, None, min_seconds=-1)
    with pytest.raises(ConfigError):
        stream_files(DelayConverter(SR, 80, 200), three, None, push_samples=0)
    with pytest.raises(ConfigError, match="not all 0"):
        stream_files(DelayConverter(SR, 80, 200), three, None, push_samples=lambda: 0)


def test_resident_bytes_is_plausible() -> None:
    assert 1 << 20 < resident_bytes() < 1 << 40


def test_gain_auto_sets_each_file_to_the_training_level(three: list[Path], tmp_path: Path) -> None:
    rep = stream_files(DelayConverter(SR, 80, 200), three, tmp_path / "auto", gain="auto")
    for src, g in zip(three, rep.input_gains, strict=True):
        x = read(src)
        assert g == pytest.approx(0.95 / np.abs(x).max())  # the default preparation: peak 0.95
        # streamed at that level, written back at the input's (as offline conversion does)
        np.testing.assert_allclose(read(tmp_path / "auto" / src.name), x, atol=1 / 32768 + 1e-6)
    # a converter that exposes its checkpoint's preparation is followed
    raw = DelayConverter(SR, 80, 200)
    raw.preparation = Preparation.raw()
    assert stream_files(raw, three, None, gain="auto").input_gains == [1.0] * 3
    assert stream_files(DelayConverter(SR, 80, 200), three, None, gain=0.5).input_gains == [0.5] * 3
    with pytest.raises(ConfigError, match="gain"):
        stream_files(DelayConverter(SR, 80, 200), three, None, gain=0.0)
