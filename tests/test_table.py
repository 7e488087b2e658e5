"""The utterance table: the same utterances and drops as the reader it replaced, built once,
checked again on every open, and read by DataLoader workers without copying."""

from __future__ import annotations

import json
import os
import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from asr.data.checks import ProblemReport
from asr.data.loader import ctc_frames_fn, make_logmel
from asr.data.table import TextRules, UtteranceTable, open_table
from asr.data.workers import init_worker, worker_context
from asr.model import DeepSpeech2
from asr.schema import DataConfig, ModelConfig
from asr.text import Vocabulary, normalize
from tests.badcorpus import build_bad_manifest
from tests.reference_reader import (
    reference_normalize,
    reference_prepare_utterances,
    reference_read_manifest,
)

SPLITS = ("train", "dev", "test")


def frames_of_default_model():
    """The default model's CTC frame count, as training computes it."""
    d = DataConfig()
    return ctc_frames_fn(make_logmel(d), DeepSpeech2(ModelConfig()).output_lengths)


def read_both(manifests: list[Path], rules: TextRules, cache: Path, frames):
    """(table rows, reference rows, table report, reference report) over `manifests`, read in
    order into one report each, as training reads its splits."""
    ours, theirs = ProblemReport(), ProblemReport()
    tables = [
        open_table(m, rules, output_frames=frames, cache_dir=cache, report=ours, log=print)
        for m in manifests
    ]
    reference = [
        reference_prepare_utterances(
            reference_read_manifest(m, theirs),
            rules.vocab,
            rules.language,
            rules.max_duration,
            frames,
            theirs,
        )
        for m in manifests
    ]
    as_text = [[replace(u, audio_path=str(u.audio_path)) for u in r] for r in reference]
    return [list(t) for t in tables], as_text, ours, theirs


def assert_same_report(ours: ProblemReport, theirs: ProblemReport) -> None:
    assert ours.counts == theirs.counts
    assert ours.examples == theirs.examples
    assert ours.dropped_chars == theirs.dropped_chars


def test_the_default_corpus_reads_the_same_as_before(corpus_cache, tmp_path, capsys):
    corpus = next(corpus_cache.glob("synth_es-*"))
    manifests = [corpus / f"{s}.jsonl" for s in SPLITS]
    rules = TextRules(Vocabulary(), "es", DataConfig().max_duration)
    frames = frames_of_default_model()
    tables, reference, ours, theirs = read_both(manifests, rules, tmp_path, frames)
    assert capsys.readouterr().out.count("into an utterance table") == 3  # built
    assert [len(t) for t in tables] == [len(r) for r in reference] and len(tables[0]) > 30
    assert tables == reference  # ids, paths, normalized texts, labels, durations
    assert_same_report(ours, theirs)

    again, *_ = read_both(manifests, rules, tmp_path, frames)
    assert "into an utterance table" not in capsys.readouterr().out  # mapped, not rebuilt
    assert again == reference


def test_the_bad_data_corpus_drops_the_same_lines_for_the_same_reasons(corpus_cache, tmp_path):
    good = next(corpus_cache.glob("synth_es-*")) / "train.jsonl"
    bad = build_bad_manifest(good, tmp_path / "bad")
    frames = frames_of_default_model()
    for max_duration in (DataConfig().max_duration, float("inf")):  # training; evaluate.py
        rules = TextRules(Vocabulary(), "es", max_duration)
        tables, reference, ours, theirs = read_both([bad], rules, tmp_path / "cache", frames)
        assert tables == reference
        assert_same_report(ours, theirs)
        assert ours.n_skipped >= 10  # every kind the manifest alone shows, and more


def test_normalizing_by_table_matches_the_character_loop():
    """`normalize` (a translation table) against the loop it replaced, on random text made of
    everything the rules treat apart: accents, ñ, punctuation, separators, other scripts,
    combining marks, odd spaces, and letters whose lowercase or decomposition is longer."""
    rng = random.Random(0)
    pool = "aáÁñÑüÜ çÇ'’`-_/¿?¡!.,;:«»\"()[]0123456789\tXYZéÉ漢ßﬁǄǆΑΩŉİẞ\u0301\u00a0\u2003"
    custom = Vocabulary((*"abcdefghijklmnopqrstuvwxyzñáé", "<SPACE>"))
    for _ in range(3000):
        text = "".join(rng.choice(pool) for _ in range(rng.randint(0, 30)))
        for language, vocab in (("es", None), ("en", None), ("es", custom)):
            got, want = normalize(text, language, vocab), reference_normalize(text, language, vocab)
            assert (got.text, got.dropped) == (want.text, want.dropped), text


def write_rows(tmp_path: Path, rows: list[dict]) -> Path:
    m = tmp_path / "m.jsonl"
    m.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return m


def test_a_file_that_went_missing_is_dropped_at_the_next_open(corpus_cache, tmp_path):
    """The table is cached, the disk is not: existence is checked on every open."""
    rows = [
        json.loads(line) for line in (next(corpus_cache.glob("synth_es-*")) / "dev.jsonl").open()
    ]
    for r in rows[:3]:
        src = next(corpus_cache.glob("synth_es-*")) / r["audio_filepath"]
        (tmp_path / src.name).write_bytes(src.read_bytes())
        r["audio_filepath"] = src.name
    m = write_rows(tmp_path, rows[:3])
    rules = TextRules(Vocabulary(), "es", 30.0)
    frames = frames_of_default_model()

    def read():
        report = ProblemReport()
        t = open_table(m, rules, output_frames=frames, cache_dir=tmp_path, report=report, log=print)
        return t, report

    assert len(read()[0]) == 3
    (tmp_path / rows[1]["audio_filepath"]).unlink()
    table, report = read()
    assert [u.utt_id for u in table] == [Path(rows[i]["audio_filepath"]).stem for i in (0, 2)]
    assert report.counts == {"missing_file": 1}
    assert table.durations.tolist() == [rows[0]["duration"], rows[2]["duration"]]


class RowReader(Dataset):
    """Reads every row of `utts` (a table, or a list of Utterance objects made before the
    fork), a block per item, and returns the worker's private dirty memory after it."""

    def __init__(self, utts, blocks: int):
        self.utts, self.blocks = utts, blocks

    def __len__(self) -> int:
        return self.blocks

    def __getitem__(self, block: int) -> int:
        n = len(self.utts)
        for i in range(block * n // self.blocks, (block + 1) * n // self.blocks):
            u = self.utts[i]
            assert u.labels and u.text and u.audio_path
        return private_dirty_kib()


def private_dirty_kib() -> int:
    """Pages this process wrote and shares with no one: what a copy-on-write fork copied, and
    what it allocated since."""
    with open("/proc/self/smaps_rollup") as f:
        return sum(int(line.split()[1]) for line in f if line.startswith("Private_Dirty:"))


def worker_growth_mib(utts) -> float:
    """How much a DataLoader worker's private memory grew while it read every row, after its
    first block (its start-up)."""
    loader = DataLoader(
        RowReader(utts, blocks=8),
        batch_size=None,
        num_workers=1,
        worker_init_fn=init_worker,
        multiprocessing_context=worker_context(),
    )
    seen = list(loader)
    return (max(seen) - seen[0]) / 1024


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps_rollup"), reason="needs Linux's /proc")
def test_a_worker_reads_every_row_without_copying_the_table(corpus_cache, tmp_path):
    corpus = next(corpus_cache.glob("synth_es-*"))
    source = [json.loads(line) for line in (corpus / "train.jsonl").open()]
    (tmp_path / "audio").mkdir()
    rows = []
    for i in range(20_000):  # unique paths (hard links): a manifest lists a file once
        r = source[i % len(source)]
        link = tmp_path / "audio" / f"{i:05d}.flac"
        os.link(corpus / r["audio_filepath"], link)
        rows.append({**r, "audio_filepath": str(link)})
    m = write_rows(tmp_path, rows)
    table = open_table(
        m,
        TextRules(Vocabulary(), "es", 30.0),
        output_frames=frames_of_default_model(),
        cache_dir=tmp_path,
        report=ProblemReport(),
        log=print,
    )
    assert isinstance(table, UtteranceTable) and len(table) == 20_000
    as_objects = list(table)  # what a list of Python objects costs a worker, for scale
    torch.manual_seed(0)
    objects_growth, table_growth = worker_growth_mib(as_objects), worker_growth_mib(table)
    print(f"worker growth: objects {objects_growth:.1f} MiB, table {table_growth:.2f} MiB")
    assert objects_growth > 5, "the measure must see a worker copy pages it reads"
    assert table_growth < 1.5, f"the worker copied {table_growth:.1f} MiB reading the table"
    assert np.isfinite(objects_growth)


@pytest.mark.parametrize(
    "line",
    ['{"a": 1}\n', ' {"a": 1}', '{"a": 1} \x0b\n', '{"a": 1}{"b": 2}', "[1, 2]", '"text"', "NaN",
     '{"a": 1, "a": 2}', "{", "", '{"a": "\\ud800"}', '{"a": 1}\r\n\t '],
)  # fmt: skip
def test_the_fast_json_line_reader_gives_json_loads_verdicts(line):
    from asr.data.manifest import _loads

    try:
        want = ("ok", json.loads(line))
    except ValueError as e:
        want = ("error", str(e))
    try:
        got = ("ok", _loads(line))
    except ValueError as e:
        got = ("error", str(e))
    assert got == want or (want[1] != want[1] and got[1] != got[1])  # NaN is not NaN


def test_listing_a_folder_finds_the_same_files_as_isfile(tmp_path, monkeypatch):
    from asr.data.table import FileCheck

    (tmp_path / "d").mkdir()
    for i in range(20):
        (tmp_path / "d" / f"{i}.wav").write_bytes(b"x")
    (tmp_path / "d" / "sub").mkdir()
    (tmp_path / "d" / "link.wav").symlink_to(tmp_path / "d" / "0.wav")
    (tmp_path / "d" / "broken.wav").symlink_to(tmp_path / "nowhere.wav")
    (tmp_path / "d" / "dirlink").symlink_to(tmp_path / "d" / "sub")
    monkeypatch.chdir(tmp_path / "d")
    names = [f"{i}.wav" for i in range(25)] + ["sub", "link.wav", "broken.wav", "dirlink", ""]
    paths = [str(tmp_path / "d" / n) for n in names] + [str(tmp_path / "d") + "/"]
    paths += [f"{tmp_path}/d/../d/3.wav", f"{tmp_path}/gone/1.wav", "4.wav", "30.wav"]
    paths = paths * 2  # the second time round, every folder has been listed
    assert FileCheck()(paths) == [os.path.isfile(p) for p in paths]
    monkeypatch.setattr(FileCheck, "KEEP_NAMES", 5)  # listings dropped, then stat instead
    (tmp_path / "e").mkdir()
    more = [str(tmp_path / "e" / f"{i}.wav") for i in range(12)]
    for p in more[::2]:
        Path(p).write_bytes(b"x")
    mixed = (paths + more) * 2
    assert FileCheck()(mixed) == [os.path.isfile(p) for p in mixed]


def test_odd_rows_read_the_same_as_before(corpus_cache, tmp_path, monkeypatch):
    """Paths Path would rewrite ("./", "//", a trailing "/."), one file listed twice in two
    spellings, ids given as numbers or as `utt_id`, a path no file system can hold (a lone
    surrogate), a relative manifest path: the same rows, ids and drops as the old reader."""
    corpus = next(corpus_cache.glob("synth_es-*"))
    src = [json.loads(line) for line in (corpus / "dev.jsonl").open()]
    for i, r in enumerate(src[:6]):
        (tmp_path / f"{i}.flac").write_bytes((corpus / r["audio_filepath"]).read_bytes())
    rows = [
        {**src[0], "audio_filepath": "./0.flac"},
        {**src[0], "audio_filepath": "0.flac"},  # the same file again
        {**src[1], "audio_filepath": f"{tmp_path}//1.flac", "id": 7},
        {**src[2], "audio_filepath": "2.flac/.", "utt_id": "two"},
        {**src[3], "audio_filepath": "3\ud800.flac"},
        {**src[4], "audio_filepath": "4.flac", "id": 0, "utt_id": ""},
        {**src[5], "audio_filepath": "sub/../5.flac", "text": "5 €"},
    ]
    (tmp_path / "sub").mkdir()
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))  # \ud800
    monkeypatch.chdir(tmp_path)
    rules = TextRules(Vocabulary(), "es", 30.0)
    tables, reference, ours, theirs = read_both(
        [Path("m.jsonl")], rules, tmp_path / "cache", frames_of_default_model()
    )
    assert tables == reference and len(tables[0]) == 4
    assert_same_report(ours, theirs)


def test_a_manifest_read_in_parts_gives_the_table_of_one_reader(
    corpus_cache, tmp_path, monkeypatch
):
    """Big manifests are read by several processes, a part each, joined in order: the same
    rows, labels and drops (in the same order) as one reader. A file listed in two parts is
    a duplicate only one reader sees in order: then the manifest is read whole instead."""
    from asr.data import table_build

    monkeypatch.setattr(table_build, "PARALLEL_ROWS", 8)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: set(range(4)), raising=False)
    joined = []
    join = table_build._join
    monkeypatch.setattr(table_build, "_join", lambda parts, out: (joined.append(len(parts)),
                                                                  join(parts, out)))  # fmt: skip
    good = next(corpus_cache.glob("synth_es-*")) / "train.jsonl"
    lines = good.read_bytes().splitlines(keepends=True)
    for i, r in enumerate(json.loads(line) for line in lines):
        lines[i] = (json.dumps({**r, "audio_filepath": str(good.parent / r["audio_filepath"])})
                    + "\n").encode()  # fmt: skip
    lines[5] = b'{"audio_filepath": "x.wav", "text": \xff}\n'  # not UTF-8
    lines[17] = b"{not json\n"
    lines[30] = lines[30].replace(b'"text": "', b'"text": "3 ')  # a digit: outside the alphabet
    rules = TextRules(Vocabulary(), "es", 20.0)
    frames = frames_of_default_model()
    for name, body in (("parts", lines), ("shared", [*lines, lines[2]])):  # lines[2] again
        manifest = tmp_path / f"{name}.jsonl"
        manifest.write_bytes(b"".join(body))
        tables, reference, ours, theirs = read_both([manifest], rules, tmp_path / name, frames)
        assert tables == reference and len(tables[0]) > 30
        assert_same_report(ours, theirs)
        assert list(ours.counts)[:2] == list(theirs.counts)[:2]  # in the same order
    assert joined == [4], "the first was joined from 4 parts; the second read whole"
