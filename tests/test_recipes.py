"""Corpus recipes: LibriSpeech, Common Voice, a folder and the Asterisk prompts -> manifests.

Fixtures are tiny corpora in each layout, built from numpy tones, with deliberately broken
files that must be skipped and counted. The Asterisk test uses the real Debian packages when
`apt-get download` can fetch them (once per session), and is skipped otherwise.
"""

from __future__ import annotations

import json
import multiprocessing
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr.data.check import main as check_main
from asr.data.corpus import recipe_corpus_dir, resolve_manifests
from asr.data.manifest import read_manifest
from asr.data.recipes import REGISTRY, RecipeError, prepare
from asr.data.recipes import asterisk as ast
from asr.data.recipes.common import hash_split
from asr.data.recipes.numwords import english, spanish, spell_numbers
from asr.schema import RECIPES, ConfigError, DataConfig, RecipeSpec
from tests.conftest import ROOT, TINY_MODEL, run_script


def tone(path: Path, seconds: float, sr: int = 16000, **kwargs) -> None:
    t = np.arange(round(seconds * sr)) / sr
    sf.write(path, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), sr, **kwargs)


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def by_id(path: Path) -> dict[str, dict]:
    return {row["id"]: row for row in rows(path)}


def header_seconds(path: Path) -> float:
    info = sf.info(str(path))
    return info.frames / info.samplerate


class Logs(list):
    def __call__(self, line: str) -> None:
        self.append(line)

    def text(self) -> str:
        return "\n".join(self)


def test_registry_matches_schema():
    assert set(REGISTRY) == set(RECIPES)


# --- LibriSpeech ---------------------------------------------------------------------------


@pytest.fixture
def librispeech(tmp_path: Path) -> Path:
    """<tmp>/LibriSpeech/{train-clean-100,dev-clean,test-clean}: 3 utterances per subset, one
    unreadable flac (train) and one transcript line without audio (dev)."""
    for i, subset in enumerate(("train-clean-100", "dev-clean", "test-clean")):
        chapter = tmp_path / "LibriSpeech" / subset / f"{100 + i}" / "7"
        chapter.mkdir(parents=True)
        lines = []
        for u in range(3):
            utt = f"{100 + i}-7-{u:04d}"
            lines.append(f"{utt} HELLO WORLD NUMBER {u} OF {subset.upper()}")
            if subset == "dev-clean" and u == 2:
                continue  # listed, never written
            if subset == "train-clean-100" and u == 1:
                (chapter / f"{utt}.flac").write_bytes(b"not a flac file at all")
                continue
            tone(chapter / f"{utt}.flac", 0.5 + 0.25 * u, format="FLAC")
        (chapter / f"{100 + i}-7.trans.txt").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_librispeech(librispeech: Path, tmp_path: Path):
    log = Logs()
    out = tmp_path / "out"
    manifests = prepare("librispeech", librispeech, out, RecipeSpec(), "en", log)
    assert set(manifests) == {"train", "dev", "test"}
    assert {s: len(rows(p)) for s, p in manifests.items()} == {"train": 2, "dev": 2, "test": 3}
    for path in manifests.values():
        for entry, row in zip(read_manifest(path), rows(path), strict=True):
            assert entry.audio_path.is_file() and Path(row["audio_filepath"]).is_absolute()
            assert row["duration"] == header_seconds(entry.audio_path)
    train = by_id(manifests["train"])
    assert train["100-7-0002"]["text"] == "HELLO WORLD NUMBER 2 OF TRAIN-CLEAN-100"  # raw
    assert train["100-7-0002"]["duration"] == 1.0
    text = log.text()
    assert "librispeech train: 2 utterances" in text and "1 unreadable audio" in text
    assert "librispeech dev: 2 utterances" in text and "1 missing audio" in text
    assert "100-7-0001.flac" in text  # the first examples are named

    # root may also be the LibriSpeech folder itself; splits are configurable.
    spec = RecipeSpec(train="train-clean-100, dev-clean", dev="", test="test-clean")
    again = prepare("librispeech", librispeech / "LibriSpeech", tmp_path / "b", spec, "en", print)
    assert set(again) == {"train", "test"}
    assert len(rows(again["train"])) == 4


def test_librispeech_missing_subset(librispeech: Path, tmp_path: Path):
    with pytest.raises(RecipeError) as e:
        prepare(
            "librispeech",
            librispeech,
            tmp_path / "o",
            RecipeSpec(train="train-other-500"),
            "en",
            print,
        )
    message = str(e.value)
    assert "\n" not in message
    assert str(librispeech / "LibriSpeech" / "train-other-500") in message
    assert "dev-clean, test-clean, train-clean-100" in message


# --- Common Voice --------------------------------------------------------------------------

CV_HEADER = "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccents\tlocale\n"


@pytest.fixture
def commonvoice(tmp_path: Path) -> Path:
    """An `es` language folder: mp3 clips, train/dev/test tables, one clip missing."""
    root = tmp_path / "cv-corpus-1.0" / "es"
    (root / "clips").mkdir(parents=True)
    sentences = {
        "train": ['El "tren" llegó tarde.', "¿Dónde está la estación?", "Ñandú y pingüino."],
        "dev": ["Buenos días, señora.", "Hace frío."],
        "test": ["Adiós."],
    }
    n = 0
    for split, texts in sentences.items():
        lines = [CV_HEADER]
        for text in texts:
            clip = f"common_voice_es_{n}.mp3"
            if n != 4:  # dev's second clip is missing
                tone(root / "clips" / clip, 0.6 + 0.1 * n, format="MP3")
            lines.append(f"abc{n}\t{clip}\t{text}\t2\t0\t\t\t\tes\n")
            n += 1
        (root / f"{split}.tsv").write_text("".join(lines), encoding="utf-8")
    return tmp_path


def test_commonvoice(commonvoice: Path, tmp_path: Path):
    log = Logs()
    # root above the release: the language folder is found inside.
    manifests = prepare("commonvoice", commonvoice, tmp_path / "out", RecipeSpec(), "es", log)
    assert {s: len(rows(p)) for s, p in manifests.items()} == {"train": 3, "dev": 1, "test": 1}
    train = by_id(manifests["train"])
    assert train["common_voice_es_0"]["text"] == 'El "tren" llegó tarde.'  # quotes kept raw
    assert train["common_voice_es_2"]["text"] == "Ñandú y pingüino."
    for path in manifests.values():
        for entry in read_manifest(path):
            assert entry.duration == header_seconds(entry.audio_path)
            assert entry.duration == pytest.approx(0.6 + 0.1 * int(entry.utt_id[-1]), abs=0.01)
    assert "commonvoice dev: 1 utterances" in log.text() and "1 missing audio" in log.text()

    spec = RecipeSpec(train="train,dev", dev="", test="")
    only = prepare(
        "commonvoice", commonvoice / "cv-corpus-1.0" / "es", tmp_path / "b", spec, "en", print
    )
    assert list(only) == ["train"] and len(rows(only["train"])) == 4
    with pytest.raises(RecipeError, match=r"no table .*other.tsv .*found: dev, test, train"):
        prepare("commonvoice", commonvoice, tmp_path / "c", RecipeSpec(test="other"), "es", print)


# --- A folder with a table -----------------------------------------------------------------

FOLDER_TEXTS = {f"clips/{i:02d}.wav": f"frase número {spanish(i)}, dicha" for i in range(20)}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "mine"
    (root / "clips").mkdir(parents=True)
    for i, rel in enumerate(FOLDER_TEXTS):
        tone(root / rel, 0.3 + 0.05 * i)
    lines = ["path,text"] + [f'{rel},"{text}"' for rel, text in FOLDER_TEXTS.items()]
    lines.append('clips/missing.wav,"no está"')
    (root / "transcripts.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    tsv = [f"{rel}\t{text}" for rel, text in FOLDER_TEXTS.items()]  # no header
    (root / "transcripts.tsv").write_text("\n".join(tsv) + "\n", encoding="utf-8")
    return root


def test_folder_csv_and_tsv(folder: Path, tmp_path: Path):
    spec = RecipeSpec(table="transcripts.csv", dev_fraction=0.2, test_fraction=0.2)
    log = Logs()
    from_csv = prepare("folder", folder, tmp_path / "csv", spec, "es", log)
    spec_tsv = RecipeSpec(dev_fraction=0.2, test_fraction=0.2)
    from_tsv = prepare("folder", folder, tmp_path / "tsv", spec_tsv, "es", print)
    assert set(from_csv) == set(from_tsv) == {"train", "dev", "test"}
    seen = {}
    for split in from_csv:
        assert rows(from_csv[split]) == rows(from_tsv[split])
        for row in rows(from_csv[split]):
            assert row["text"] == FOLDER_TEXTS[row["id"]]  # commas inside quotes kept
            assert row["duration"] == header_seconds(folder / row["id"])
            assert hash_split(row["id"], 0.2, 0.2) == split
            seen[row["id"]] = split
    assert sorted(seen) == sorted(FOLDER_TEXTS)
    assert "1 missing audio" in log.text()

    # Adding files never moves the old ones.
    for i in range(20, 40):
        tone(folder / f"clips/{i:02d}.wav", 0.3)
    with open(folder / "transcripts.tsv", "a", encoding="utf-8") as f:
        f.writelines(f"clips/{i:02d}.wav\tmás\n" for i in range(20, 40))
    grown = prepare("folder", folder, tmp_path / "grown", spec_tsv, "es", print)
    after = {row["id"]: split for split, path in grown.items() for row in rows(path)}
    assert len(after) == 40 and all(after[key] == split for key, split in seen.items())


def test_folder_errors(folder: Path, tmp_path: Path):
    with pytest.raises(RecipeError, match=r"table not found: .*nope.tsv .*transcripts.csv"):
        prepare("folder", folder, tmp_path / "o", RecipeSpec(table="nope.tsv"), "es", print)
    with pytest.raises(ValueError, match="dev_fraction"):
        RecipeSpec(dev_fraction=0.6, test_fraction=0.5)
    (folder / "bad.tsv").write_text("clips/nothing.wav\tnada\n")
    with pytest.raises(RecipeError, match=r"no usable utterances .*1 missing audio"):
        prepare("folder", folder, tmp_path / "o", RecipeSpec(table="bad.tsv"), "es", print)


def test_hash_split_shares():
    splits = [hash_split(f"clip-{i}.wav", 0.1, 0.2) for i in range(4000)]
    assert splits.count("dev") / 4000 == pytest.approx(0.1, abs=0.02)
    assert splits.count("test") / 4000 == pytest.approx(0.2, abs=0.02)
    assert hash_split("a/b.wav", 0.1, 0.1) == hash_split("a/b.wav", 0.1, 0.1)


# --- The command line ----------------------------------------------------------------------


def test_cli(folder: Path, tmp_path: Path):
    cmd = [sys.executable, "-m", "asr.data", "prepare", "folder"]
    done = subprocess.run(
        [*cmd, "--root", str(folder), "--out", str(tmp_path / "m"), "--dev-fraction", "0.2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert f"train: {tmp_path / 'm' / 'train.jsonl'}" in done.stdout
    assert (tmp_path / "m" / "dev.jsonl").is_file()

    missing = subprocess.run(
        [*cmd, "--root", str(tmp_path / "nowhere"), "--out", str(tmp_path / "n")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 2
    assert missing.stderr.strip().count("\n") == 0 and "Traceback" not in missing.stderr
    assert "root folder not found" in missing.stderr and "nowhere" in missing.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["nosuch", "--root", ".", "--out", "o"], "unknown recipe 'nosuch'"),
        (["folder", "--out", "o"], "--root is required"),
        (["librispeech", "--root", "."], "--out"),
        (["asterisk", "--language", "fr", "--out", "o"], "invalid choice: 'fr'"),
    ],
)
def test_cli_errors(argv: list[str], message: str, capsys):
    from asr.data.recipes.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


# --- Training integration: prepared once into the cache ------------------------------------


def _data(folder: Path, cache: Path, **kwargs) -> DataConfig:
    return DataConfig(corpus="folder", root=str(folder), cache_dir=str(cache), **kwargs)


def _resolve_in_child(data: DataConfig, queue) -> None:
    queue.put({s: str(p) for s, p in resolve_manifests(data, log=lambda _: None).items()})


def test_resolve_manifests_prepares_once(folder: Path, tmp_path: Path):
    cache = tmp_path / "cache"
    data = _data(folder, cache)
    # Two jobs starting at once: one prepares, the other waits and reuses.
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    jobs = [ctx.Process(target=_resolve_in_child, args=(data, queue)) for _ in range(2)]
    for job in jobs:
        job.start()
    results = [queue.get(timeout=60) for _ in jobs]
    for job in jobs:
        job.join(timeout=60)
    assert results[0] == results[1]
    final = recipe_corpus_dir(data)
    assert final.parent == cache and final.name.startswith("folder-")
    assert (final / "DONE").is_file() and not list(cache.glob(".tmp-*"))

    log = Logs()
    manifests = resolve_manifests(data, log=log)
    assert {s: str(p) for s, p in manifests.items()} == results[0]
    assert "reusing" in log.text()
    assert sum(len(read_manifest(p)) for p in manifests.values()) == 20

    other = _data(folder, cache, recipe=RecipeSpec(dev_fraction=0.3))
    assert recipe_corpus_dir(other) != final


def test_resolve_manifests_errors(folder: Path, tmp_path: Path):
    with pytest.raises(ConfigError, match=r"data\.root is required"):
        resolve_manifests(DataConfig(corpus="folder", cache_dir=str(tmp_path)))
    with pytest.raises(ConfigError, match="table not found"):
        resolve_manifests(_data(folder, tmp_path, recipe=RecipeSpec(table="none.csv")))
    assert not list(tmp_path.glob(".tmp-*"))  # a failed preparation leaves nothing behind


# --- Asterisk: text rewriting, a synthetic tree, the real packages -------------------------


@pytest.mark.parametrize(
    ("n", "es", "en"),
    [
        (0, "cero", "zero"),
        (1, "uno", "one"),
        (16, "dieciséis", "sixteen"),
        (21, "veintiuno", "twenty-one"),
        (31, "treinta y uno", "thirty-one"),
        (100, "cien", "one hundred"),
        (101, "ciento uno", "one hundred one"),
        (500, "quinientos", "five hundred"),
        (1000, "mil", "one thousand"),
        (1234, "mil doscientos treinta y cuatro", "one thousand two hundred thirty-four"),
        (21000, "veintiún mil", "twenty-one thousand"),
        (101000, "ciento un mil", "one hundred one thousand"),
        (
            999999,
            "novecientos noventa y nueve mil novecientos noventa y nueve",
            "nine hundred ninety-nine thousand nine hundred ninety-nine",
        ),
        (1000000, "un millón", "one million"),
        (2000000, "dos millones", "two million"),
    ],
)
def test_number_words(n: int, es: str, en: str):
    assert spanish(n) == es
    assert english(n) == en


def test_spell_numbers():
    assert spell_numbers("Marque 1, o 28.8 Kb.", "es") == "Marque uno, o veintiocho punto ocho Kb."
    assert spell_numbers("3D audio, H.323, ext 007", "en") == (
        "three D audio, H. three two three, ext zero zero seven"
    )


@pytest.mark.parametrize(
    ("raw", "language", "clean"),
    [
        ("[tono simple]", "es", None),
        ("(10 seconds of silence)", "en", None),
        ("(beep)", "es", None),
        ("at [@]", "en", "at"),
        ("Sus saludos [temporales] estan en uso", "es", "Sus saludos temporales estan en uso"),
        ('IAX (note: does not say "2")', "en", "IAX"),
        ("press * to pause, press # to exit", "en", "press star to pause, press pound to exit"),
        ("marque * o #", "es", "marque asterisco o tecla de número"),
        ("h-323", "es", "h-tres dos tres"),
    ],
)
def test_clean_text(raw: str, language: str, clean: str | None):
    assert ast.clean_text(raw, language) == clean


def test_asterisk_tree(tmp_path: Path):
    """An installed-like tree (sounds/es_MX_f_Allison + a plain-text transcript)."""
    sounds = tmp_path / "sounds" / "es_MX_f_Allison"
    (sounds / "digits").mkdir(parents=True)
    for rel in ("digits/0", "digits/1F", "digits/10", "beep", "vm-press", "marque"):
        tone(sounds / f"{rel}.wav", 0.4, sr=8000)
    (tmp_path / "core-sounds-es.txt").write_text(
        "; Core Asterisk Sounds in Spanish\n\ndigits/0: cero\ndigits/0: diez\n"
        "digits/1f: una\nbeep: [tono simple]\nvm-press: Presione\nmarque: Marque 5 y #\n"
        "nosound: Sin audio\nvm-empty:\n",
        encoding="utf-8",
    )
    log = Logs()
    spec = RecipeSpec(dev_fraction=0.0, test_fraction=0.0)
    manifests = prepare("asterisk", tmp_path, tmp_path / "out", spec, "es", log)
    assert set(manifests) == {"train", "all"}
    got = {row["id"]: row for row in rows(manifests["all"])}
    assert {k: r["text"] for k, r in got.items()} == {
        "digits/0": "cero",
        "digits/1f": "una",
        "vm-press": "Presione",
        "marque": "Marque cinco y tecla de número",
    }
    assert all(r["duration"] == 0.4 for r in got.values())
    text = log.text()
    for fragment in (
        "1 repeated key (first kept)",
        "1 non-speech",
        "1 no audio file",
        "1 empty transcript",
        "1 recordings have no transcript line",
    ):
        assert fragment in text, text
    with pytest.raises(RecipeError, match="no es prompts"):
        prepare("asterisk", tmp_path / "out", tmp_path / "o2", spec, "es", print)


@pytest.fixture(scope="session")
def asterisk_debs(tmp_path_factory) -> Path:
    """The two Spanish packages, downloaded once per session (skip when impossible)."""
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        pytest.skip("needs apt-get and dpkg-deb to fetch the asterisk-core-sounds-es packages")
    debs = tmp_path_factory.mktemp("asterisk-debs")
    try:
        ast.download("es", debs, print)
    except RecipeError as e:
        pytest.skip(f"cannot download the asterisk packages: {e}")
    if len(ast.find_debs(debs, "es")) != 2:
        pytest.skip("apt-get download did not give both asterisk-core-sounds-es packages")
    return debs


def test_asterisk_es_packages(asterisk_debs: Path, tmp_path: Path):
    log = Logs()
    manifests = prepare("asterisk", asterisk_debs, tmp_path / "out", RecipeSpec(), "es", log)
    assert set(manifests) == {"train", "dev", "test", "all"}
    everything = read_manifest(manifests["all"])
    assert 470 <= len(everything) <= 490, log.text()
    assert sum(len(read_manifest(manifests[s])) for s in ("train", "dev", "test")) == len(
        everything
    )
    texts = {e.utt_id: e.text for e in everything}
    assert texts["digits/0"] == "cero" and texts["digits/1f"] == "una"
    assert texts["vm-leavemsg"] == "Marque cinco para dejar mensaje"
    assert not [t for t in texts.values() if any(c in t for c in "0123456789#*[]()")]
    for entry in everything[::20]:
        assert entry.audio_path.is_file()
        assert entry.duration == len(sf.read(entry.audio_path)[0]) / 8000
    minutes = sum(e.duration for e in everything) / 60
    assert 25 < minutes < 35
    # Audio lives inside out/: manifest paths are relative, so the folder can move.
    assert not Path(rows(manifests["all"])[0]["audio_filepath"]).is_absolute()
    assert "1 repeated key (first kept)" in log.text()
    # the manifest checker passes it, with the asterisk data preset (long menu prompts)
    assert check_main([str(manifests["all"]), "--data", "asterisk", "--jobs", "2"]) == 0


# --- End to end: train.py on a folder corpus -----------------------------------------------

WORDS = ["hola", "casa", "perro", "gato", "mesa", "agua", "sol", "luna", "verde", "libro"]


@pytest.mark.slow
def test_train_on_folder(tmp_path: Path):
    from asr.data.espeak import Espeak

    engine = Espeak()
    root = tmp_path / "words"
    root.mkdir()
    lines = ["path\ttext"]
    for i in range(24):
        text = f"{WORDS[i % 10]} {WORDS[(3 * i + 1) % 10]}"
        audio = engine.synth(text, "es", rate=120 + 3 * i, seed=i)
        sf.write(root / f"{i:02d}.wav", audio, engine.sample_rate)
        lines.append(f"{i:02d}.wav\t{text}")
    (root / "transcripts.tsv").write_text("\n".join(lines) + "\n")
    args = [
        "data=folder",
        f"data.root={root}",
        f"data.cache_dir={tmp_path / 'cache'}",
        "data.recipe.dev_fraction=0.2",
        "data.recipe.test_fraction=0.2",
        "data.batch_size=2",
        *TINY_MODEL,
        "trainer.max_steps=2",
        "logger=none",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    done = run_script("train.py", args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "ok" and summary["step"] == 2
    assert len(list((tmp_path / "cache").glob("folder-*/train.jsonl"))) == 1
