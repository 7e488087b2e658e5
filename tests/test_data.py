import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from asr.data.audio import AudioError, read_audio
from asr.data.checks import ProblemReport, min_ctc_frames
from asr.data.dataset import BucketBatchSampler, Collate, SpeechDataset
from asr.data.manifest import ManifestError, read_manifest
from asr.data.table import TextRules, open_table
from asr.features import LogMel
from asr.text import Vocabulary


def write_wav(path: Path, seconds: float, sr: int = 16000, channels: int = 1) -> Path:
    t = np.arange(int(seconds * sr)) / sr
    wave = 0.1 * np.sin(2 * np.pi * 440 * t).astype(np.float32)
    sf.write(path, np.stack([wave] * channels, axis=1) if channels > 1 else wave, sr)
    return path


def write_manifest(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def frames_10ms_stride2(duration):
    """Seconds -> CTC frames at 10 ms features and stride 2 (an array -> an array)."""
    frames = (np.floor(np.asarray(duration, dtype=float) * 100).astype(int) + 1 + 1) // 2
    return frames if np.ndim(duration) else int(frames)


def utterances_of(tmp_path: Path, rows: list[dict], report: ProblemReport | None = None):
    """The utterances of a manifest of `rows`, as training keeps them (Spanish, 20 s at most)."""
    return open_table(
        write_manifest(tmp_path / "m.jsonl", rows),
        TextRules(Vocabulary(), "es", 20.0),
        output_frames=frames_10ms_stride2,
        cache_dir=tmp_path / "cache",
        report=ProblemReport() if report is None else report,
        log=lambda _: None,
    )


def test_manifest_relative_paths_and_ids(tmp_path):
    write_wav(tmp_path / "a.wav", 0.5)
    m = write_manifest(
        tmp_path / "m.jsonl", [{"audio_filepath": "a.wav", "text": "hola", "duration": 0.5}]
    )
    (e,) = read_manifest(m)
    assert e.audio_path == tmp_path / "a.wav" and e.utt_id == "a" and e.duration == 0.5


def test_malformed_manifest_names_file_and_line(tmp_path):
    m = tmp_path / "m.jsonl"
    m.write_text('{"audio_filepath": "a.wav", "text": "x", "duration": 1}\n{not json\n')
    with pytest.raises(ManifestError, match=r"m\.jsonl:2"):
        read_manifest(m)


def test_filters_drop_with_reasons(tmp_path):
    for name in ("ok", "empty", "long", "longer"):  # each file listed once (no duplicate_path)
        write_wav(tmp_path / f"{name}.wav", 0.3)
    rows = [
        {"audio_filepath": "ok.wav", "text": "Sí, señor", "duration": 0.3},
        {"audio_filepath": "empty.wav", "text": " ¿? ", "duration": 0.3},  # empty when normalized
        {"audio_filepath": "missing.wav", "text": "hola", "duration": 0.3},
        {"audio_filepath": "long.wav", "text": "una frase larguisima " * 3, "duration": 0.3},
        {"audio_filepath": "longer.wav", "text": "hola", "duration": 30.0},
    ]
    report = ProblemReport()
    utts = utterances_of(tmp_path, rows, report)
    assert [u.text for u in utts] == ["si senior"]
    assert report.counts == {
        "empty_text": 1,
        "missing_file": 1,
        "too_long_for_ctc": 1,
        "too_long_duration": 1,
    }
    assert report.examples["missing_file"][0].startswith("missing (")


def test_min_ctc_frames_counts_repeats():
    assert min_ctc_frames([2, 3, 4]) == 3
    assert min_ctc_frames([2, 2, 3, 3, 3]) == 8


def test_audio_resampled_and_mixed_down(tmp_path):
    audio = read_audio(write_wav(tmp_path / "s.wav", 1.0, sr=8000, channels=2), 16000)
    assert audio.wave.shape == (16000,) and audio.wave.dtype == torch.float32
    assert (audio.source_rate, audio.channels, audio.source_seconds) == (8000, 2, 1.0)


def test_broken_audio_raises_audio_error_with_reason(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF0000WAVEjunk")
    with pytest.raises(AudioError) as e:
        read_audio(bad, 16000)
    assert e.value.reason == "unreadable_audio"


def test_an_empty_file_declared_0_s_is_skipped_as_empty_audio(tmp_path):
    """A manifest measured from an empty file declares 0 s: the audio check names it
    `empty_audio`, not the transcript check `too_long_for_ctc`."""
    sf.write(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32), 16000)
    rows = [{"audio_filepath": "empty.wav", "text": "hola", "duration": 0.0}]
    report = ProblemReport()
    utts = utterances_of(tmp_path, rows, report)
    assert len(utts) == 1 and not report.counts  # no verdict before the audio is read
    item = SpeechDataset(utts, LogMel(16000, 16), None, output_frames=frames_10ms_stride2)[0]
    assert item.feats is None and item.problems[0][0] == "empty_audio"


def test_broken_audio_is_skipped_and_reported_in_the_batch(tmp_path):
    write_wav(tmp_path / "good.wav", 0.5)
    (tmp_path / "bad.wav").write_bytes(b"not audio at all")
    rows = [
        {"audio_filepath": "good.wav", "text": "hola", "duration": 0.5},
        {"audio_filepath": "bad.wav", "text": "adios", "duration": 0.5},
    ]
    utts = utterances_of(tmp_path, rows)
    ds = SpeechDataset(utts, LogMel(16000, 16), None)
    batch = Collate(utts)([ds[0], ds[1]])
    assert len(batch) == 1 and batch.utts[0].text == "hola"
    assert [(u, k) for u, k, _ in batch.problems] == [("bad", "unreadable_audio")]


def test_collate_pads_and_lengths_travel_with_tensors(tmp_path):
    rows = []
    for i, sec in enumerate((0.5, 1.0, 0.75)):
        write_wav(tmp_path / f"{i}.wav", sec)
        rows.append({"audio_filepath": f"{i}.wav", "text": "ab" * (i + 1), "duration": sec})
    utts = utterances_of(tmp_path, rows)
    logmel = LogMel(16000, 16)
    ds = SpeechDataset(utts, logmel, None)
    batch = Collate(utts)([ds[i] for i in range(3)])
    assert batch.feats.shape == (3, 16, logmel.num_frames(16000))
    assert batch.feat_lens.tolist() == [logmel.num_frames(n) for n in (8000, 16000, 12000)]
    assert batch.target_lens.tolist() == [2, 4, 6]
    assert batch.targets.shape == (3, 6)
    assert batch.feats[0, :, batch.feat_lens[0] :].abs().sum() == 0  # padding is zero
    assert batch.audio_seconds == pytest.approx(2.25)


def test_bucket_sampler_groups_similar_lengths_and_covers_everything_once():
    rng = np.random.default_rng(0)
    durations = rng.uniform(1, 15, size=503).tolist()
    sampler = BucketBatchSampler(durations, batch_size=8, num_buckets=10, seed=3)
    batches = list(sampler)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(503))
    assert len(batches) == len(sampler)
    spreads = [max(durations[i] for i in b) - min(durations[i] for i in b) for b in batches]
    assert np.median(spreads) < 2.0  # random batches would spread over ~10 s

    # padding waste, compared with shuffled batches
    def waste(bs):
        return sum(len(b) * max(durations[i] for i in b) - sum(durations[i] for i in b) for b in bs)

    perm = rng.permutation(503).tolist()
    random_batches = [perm[j : j + 8] for j in range(0, 503, 8)]
    assert waste(batches) < 0.25 * waste(random_batches)


def test_bucket_sampler_order_changes_per_epoch_and_resumes_mid_epoch():
    durations = list(np.linspace(1, 10, 100))
    sampler = BucketBatchSampler(durations, batch_size=4, num_buckets=5, seed=1)
    e0, e1 = sampler.batches(0), sampler.batches(1)
    assert e0 != e1
    assert e0 == BucketBatchSampler(durations, 4, 5, seed=1).batches(
        0
    )  # pure function of seed+epoch
    sampler.set_epoch(1, start=7)
    assert list(sampler) == e1[7:] and len(sampler) == len(e1) - 7


def test_eval_sampler_is_sorted_and_not_shuffled():
    durations = [5.0, 1.0, 3.0, 2.0, 4.0]
    batches = BucketBatchSampler(durations, 2, num_buckets=1, shuffle=False).batches(0)
    assert batches == [[1, 3], [2, 4], [0]]


def test_a_batch_larger_than_the_training_set_is_refused_before_training(tmp_path):
    from asr.data.loader import load_splits
    from asr.schema import ConfigError, DataConfig

    rows = []
    for i in range(2):
        write_wav(tmp_path / f"{i}.wav", 0.5)
        rows.append({"audio_filepath": f"{i}.wav", "text": "hola", "duration": 0.5})
    m = write_manifest(tmp_path / "m.jsonl", rows)
    d = DataConfig(corpus="manifest", train_manifest=str(m), dev_manifest=str(m), batch_size=5)
    with pytest.raises(ConfigError, match=r"data.batch_size \(5\) > training utterances \(2\)"):
        load_splits(d, Vocabulary(), frames_10ms_stride2, log=lambda _: None)
    empty = write_manifest(tmp_path / "e.jsonl", [{**rows[0], "text": "¿?"}])
    d = DataConfig(corpus="manifest", train_manifest=str(empty), dev_manifest=str(m))
    with pytest.raises(ConfigError, match=r"no usable training utterances .*1 empty_text"):
        load_splits(d, Vocabulary(), frames_10ms_stride2, log=lambda _: None)


def test_batches_by_total_seconds_fill_up_to_the_limit():
    durations = list(np.random.default_rng(0).uniform(0.5, 6.0, size=200))
    sampler = BucketBatchSampler(durations, batch_size=1, num_buckets=5, batch_seconds=20.0)
    batches = sampler.batches(0)
    assert sorted(i for b in batches for i in b) == list(range(200))  # each utterance once
    for b in batches:
        seconds = sum(durations[i] for i in b)
        assert seconds <= 20.0 or len(b) == 1  # one longer utterance still gets a batch
    assert np.mean([len(b) for b in batches]) > 3  # many short ones share a batch


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_get_disjoint_shards_of_equal_length(world_size):
    durations = list(np.random.default_rng(1).uniform(0.5, 6.0, size=101))
    whole = BucketBatchSampler(durations, 4, num_buckets=5, seed=2).all_batches(3)
    shards = [
        BucketBatchSampler(durations, 4, 5, seed=2, rank=r, world_size=world_size).batches(3)
        for r in range(world_size)
    ]
    assert len({len(s) for s in shards}) == 1  # the same number of steps on every rank
    assert len(shards[0]) == len(whole) // world_size
    seen = [i for s in shards for b in s for i in b]
    assert len(seen) == len(set(seen))  # disjoint
    dropped = len(whole) % world_size
    assert len(seen) == sum(len(b) for b in whole[: len(whole) - dropped])
