"""Render a small parallel speech corpus with Debian's ``flite`` synthesiser.

``flite`` (CMU's small TTS engine) ships several voices (``rms`` and ``awb`` male,
``slt`` female, ...). Rendering the same prompts with two of them gives a
parallel two-speaker corpus with no download, which the tests, recipes and smoke
runs use. Output layout (readable by :func:`voiceconv.data.corpora.read_speaker_folders`)::

    out_dir/<voice>/<prompt id>.wav     (mono, ``sample_rate`` Hz)
    out_dir/transcripts.tsv             (utt_id<TAB>text)

Rendering is resumable: a wav that already exists, decodes, and has the requested
rate is kept, unless ``transcripts.tsv`` says it was rendered from another text.
flite runs in threads rather than processes: each job is mostly a subprocess plus
a short resample, so threads keep start-up cheap and need no pickling.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from tqdm import tqdm

from voiceconv.audio.io import load_audio, save_audio
from voiceconv.data.corpora import TRANSCRIPTS_TSV, check_name, read_transcripts
from voiceconv.errors import AudioError, ConfigError, VoiceconvError
from voiceconv.utils.atomic import atomic_write_text

#: Seconds one flite call may take before it is treated as hung.
FLITE_TIMEOUT_S = 120.0


def find_flite() -> Path:
    """Path of the ``flite`` executable on ``PATH``.

    Raises :class:`VoiceconvError` ``"flite not found: apt-get install flite"`` when
    there is none.
    """
    found = shutil.which("flite")
    if found is None:
        raise VoiceconvError("flite not found: apt-get install flite")
    return Path(found)


def list_voices(flite: str | os.PathLike[str] | None = None) -> list[str]:
    """Names of the voices compiled into ``flite`` (parsed from ``flite -lv``)."""
    exe = Path(flite) if flite is not None else find_flite()
    try:
        res = subprocess.run(
            [str(exe), "-lv"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise VoiceconvError(f"{exe}: cannot list voices ({err})") from None
    text = res.stdout + res.stderr
    _, sep, names = text.partition("Voices available:")
    if not sep:
        raise VoiceconvError(f"{exe}: unexpected 'flite -lv' output: {text.strip()[:80]!r}")
    return names.split()


def _is_good(path: Path, sample_rate: int) -> bool:
    """True when ``path`` decodes as non-silent audio at ``sample_rate`` Hz."""
    if not path.is_file():
        return False
    try:
        wav, sr = load_audio(path)
    except AudioError:
        return False
    return sr == sample_rate and wav.size > 0


def _render_one(exe: Path, voice: str, text: str, dest: Path, sample_rate: int) -> Path:
    """Synthesise ``text`` with ``voice`` into ``dest`` (resampled, written atomically)."""
    fd, tmp_name = tempfile.mkstemp(prefix="voiceconv-flite-", suffix=".wav")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        try:
            res = subprocess.run(
                [str(exe), "-voice", voice, "-t", text, "-o", str(tmp)],
                capture_output=True,
                text=True,
                timeout=FLITE_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise AudioError(dest, f"flite timed out after {FLITE_TIMEOUT_S:.0f} s") from None
        if res.returncode != 0:
            detail = (res.stderr.strip().splitlines() or ["no message"])[-1]
            raise AudioError(dest, f"flite exited with {res.returncode}: {detail}")
        wav, _ = load_audio(tmp, sample_rate)
        save_audio(dest, wav, sample_rate)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return dest


def render_corpus(
    prompts: Sequence[tuple[str, str]],
    voices: Sequence[str] = ("rms", "slt"),
    *,
    out_dir: str | os.PathLike[str],
    sample_rate: int = 22050,
    workers: int = 2,
    limit: int | None = None,
    progress: bool = True,
) -> dict[str, list[Path]]:
    """Render ``prompts`` (``[(id, text), ...]``) with each flite voice into ``out_dir``.

    Writes ``out_dir/<voice>/<id>.wav`` at ``sample_rate`` and merges the prompts
    into ``out_dir/transcripts.tsv``. ``limit`` keeps the first ``limit`` prompts.
    Existing good files are skipped. Returns ``{voice: [wav path, ...]}`` in prompt
    order. Raises :class:`VoiceconvError` when flite is missing, a voice is
    unknown, or (after all other files are done) any prompt failed to render.
    """
    if sample_rate <= 0:
        raise ConfigError(f"sample_rate must be > 0, not {sample_rate}")
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, not {workers}")
    if limit is not None and limit < 0:
        raise ConfigError(f"limit must be >= 0, not {limit}")
    voices = list(dict.fromkeys(voices))
    if not voices:
        raise ConfigError("no flite voice given")
    chosen = list(prompts)[: limit if limit is not None else None]
    ids = [uid for uid, _ in chosen]
    if len(set(ids)) != len(ids):
        raise ConfigError("prompt ids must be unique")
    for uid, text in chosen:
        check_name(uid, "prompt id")
        if not text.strip():
            raise ConfigError(f"prompt {uid!r} has no text")

    exe = find_flite()
    known = list_voices(exe)
    for v in voices:
        check_name(v, "voice name")
        if v not in known:
            raise VoiceconvError(f"flite voice {v!r} unknown; available: {' '.join(known)}")

    out = Path(out_dir)
    tsv = out / TRANSCRIPTS_TSV
    table = read_transcripts(tsv)
    texts = {uid: " ".join(text.split()) for uid, text in chosen}
    stale = {uid for uid, text in texts.items() if uid in table and table[uid] != text}

    result = {v: [out / v / f"{uid}.wav" for uid in ids] for v in voices}
    jobs = [
        (v, uid, dest)
        for v in voices
        for uid, dest in zip(ids, result[v], strict=True)
        if uid in stale or not _is_good(dest, sample_rate)
    ]
    failures: list[str] = []
    if jobs:
        with (
            ThreadPoolExecutor(max_workers=workers) as pool,
            tqdm(total=len(jobs), desc="flite", unit="wav", disable=not progress) as bar,
        ):
            futures = {
                pool.submit(_render_one, exe, v, texts[uid], dest, sample_rate): dest
                for v, uid, dest in jobs
            }
            for fut in as_completed(futures):
                try:
                    fut.result()
                except VoiceconvError as err:
                    failures.append(str(err))
                    if futures[fut].stem in stale:  # never keep audio of an old text
                        futures[fut].unlink(missing_ok=True)
                bar.update(1)

    table.update(texts)
    lines = ["utt_id\ttext"] + [f"{uid}\t{table[uid]}" for uid in sorted(table)]
    atomic_write_text(tsv, "\n".join(lines) + "\n")
    if failures:
        raise VoiceconvError(
            f"{len(failures)} of {len(jobs)} flite renders failed; first: {sorted(failures)[0]}"
        )
    return result
