"""The beets plugin (beetsplug/mer.py) as a beets user runs it: real beets, no mocks.

Each test builds its own library (BEETSDIR in a temporary folder, a config enabling the
plugin), imports generated audio files with `beet import -A`, runs `beet mer` and reads
back what it did: the database (`beet ls -f`), the file tags (raw mutagen, mer's reader,
mediafile), and that `beet mer`, `beet write` and `mer tag` write the same tags.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mutagen
import pytest
import yaml
from audio_factory import write_broken
from mediafile import MediaFile
from mutagen.apev2 import APEv2
from mutagen.id3 import ID3
from mutagen.mp4 import MP4
from tiny_model import train_tiny_model

from beetsplug.mer import DEFAULTS, media_fields
from mer_plugin.tags import FIELDS, read_tags, write_tags

BEET = Path(sys.executable).with_name("beet")
MER = Path(sys.executable).with_name("mer")
FORMATS = ("flac", "mp3", "m4a", "ogg", "opus", "wav", "aiff")
ATTRIBUTES = ("mood", "mer_valence", "mer_arousal", "mer_quadrant", "mer_confidence", "mer_model")
LS_FORMAT = "\t".join(["$path", *(f"${name}" for name in ATTRIBUTES)])
RELEASE = "tiny-tagger 1"  # the tiny model's MER_MODEL


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_model(tmp_path_factory.mktemp("tiny"))


class Beets:
    """A beets setup of its own: BEETSDIR, config (the plugin enabled), library."""

    def __init__(self, root: Path, model: Path | None, **config) -> None:
        self.root = root
        self.dir = root / "beetsdir"
        self.dir.mkdir(parents=True)
        self.command: list[str | Path] = [BEET]
        settings = {
            "directory": str(root / "library"),
            "library": str(self.dir / "library.db"),
            "plugins": ["mer"],
            "import": {"copy": False, "write": True, "quiet": True},
            "mer": {"auto": False, "workers": 1, "model": model and str(model)},
        }
        for key, value in config.items():
            if isinstance(value, dict):
                settings.setdefault(key, {}).update(value)
            else:
                settings[key] = value
        (self.dir / "config.yaml").write_text(yaml.safe_dump(settings), encoding="utf-8")

    def __call__(self, *args: str | Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "BEETSDIR": str(self.dir), "MER_CACHE_DIR": str(self.root / "c")}
        command = [*self.command, *map(os.fsencode, args)]
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=180)
        if ok:
            assert done.returncode == 0, done.stderr
        return done

    def import_(self, folder: Path) -> None:
        self("import", "-A", folder)

    def fields(self, *query: str) -> dict[str, dict[str, str]]:
        """Every item's mer attributes as `beet ls -f` prints them, by path."""
        listed = self("ls", "-f", LS_FORMAT, *query).stdout.splitlines()
        rows = [line.split("\t") for line in listed]
        return {path: dict(zip(ATTRIBUTES, values, strict=True)) for path, *values in rows}


def songs(root: Path, formats: tuple[str, ...] = FORMATS, stem: str = "song") -> list[Path]:
    """One short noise file per format (3.5 s: a model segment is 3 s)."""
    from audio_factory import write_audio

    root.mkdir(parents=True, exist_ok=True)
    made = []
    for i, fmt in enumerate(formats):
        rate = 48000 if fmt == "opus" else 44100
        path = root / f"{i:02d} {stem}.{fmt}"
        made.append(write_audio(path, 3.5, sample_rate=rate, kind="noise", seed=i))
    return made


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def file_fields(path: Path) -> dict[str, str]:
    """mer's fields in a file, by their container's raw key, read with mutagen alone."""
    audio = mutagen.File(path)
    tags = audio.tags
    if isinstance(tags, ID3):
        found = {key: str(tags[key].text[0]) for key in tags if key in _ID3_KEYS}
    elif isinstance(audio, MP4):
        found = {k: bytes(v[0]).decode() for k, v in tags.items() if k in _MP4_KEYS}
    else:  # Vorbis comments
        found = {field.name: tags[field.vorbis][0] for field in FIELDS if field.vorbis in tags}
    return found


_ID3_KEYS = {key for field in FIELDS for key in (field.id3v24, field.id3v23)}
_MP4_KEYS = {field.mp4 for field in FIELDS}


def raw_tags(path: Path) -> list[tuple]:
    """mer's fields as stored, byte for byte: ID3 frames (key, encoding, bytes), MP4
    atoms (key, data type, bytes), Vorbis comments (key as written, value)."""
    audio = mutagen.File(path)
    tags = audio.tags
    if isinstance(tags, ID3):
        frames = (tags[key] for key in sorted(tags.keys()) if key in _ID3_KEYS)
        return [(f.HashKey, f.encoding, tuple(f.text)) for f in frames]
    if isinstance(audio, MP4):
        return sorted(
            (k, v.dataformat, bytes(v)) for k, vs in tags.items() if k in _MP4_KEYS for v in vs
        )
    if isinstance(tags, APEv2):
        names = {field.ape.lower() for field in FIELDS}
        return sorted((k, v.kind, str(v)) for k, v in tags.items() if k.lower() in names)
    names = {field.vorbis.lower() for field in FIELDS}
    return sorted((k, v) for k, v in tags if k.lower() in names)


def registered_mediafile(path: Path) -> MediaFile:
    """mediafile with mer's fields, as beets reads files once the plugin is loaded."""
    for name, field in media_fields().items():
        if name not in MediaFile.__dict__:
            MediaFile.add_field(name, field)
    return MediaFile(path)


# ------------------------------------------------------------------------------ beet mer


def test_beet_mer_tags_a_library_of_several_formats(model_dir, tmp_path) -> None:
    beet = Beets(tmp_path, model_dir)
    paths = songs(tmp_path / "music")
    paths.append(songs(tmp_path / "music", ("flac",), stem="café ünïcode")[0])
    latin = os.fsencode(tmp_path / "music") + b"/caf\xe9.flac"  # a name that is not UTF-8
    os.rename(songs(tmp_path / "latin", ("flac",))[0], latin)
    beet.import_(tmp_path / "music")
    assert {str(p) for p in paths} < set(beet.fields())

    result = beet("mer")
    assert f"{len(paths) + 1} analysed" in result.stderr and "0 failed" in result.stderr
    assert f"[{len(paths) + 1}/{len(paths) + 1}]" in result.stderr  # a line per item
    assert read_tags(latin)["MER_MODEL"] == RELEASE
    fields = beet.fields()
    for path in paths:
        got = fields[str(path)]
        assert got["mood"] in {"Happy", "Angry", "Sad", "Calm"} and got["mer_model"] == RELEASE
        assert got["mer_quadrant"] in {"Q1", "Q2", "Q3", "Q4"}
        for name in ("mer_valence", "mer_arousal", "mer_confidence"):
            assert 0 <= float(got[name]) <= 1 and len(got[name].split(".")[1]) == 3
        in_file = read_tags(path)
        assert in_file["mood"] == got["mood"] and in_file["MER_MODEL"] == RELEASE
        assert in_file["MER_VALENCE"] == got["mer_valence"]
        assert in_file["MER_CONFIDENCE"] == got["mer_confidence"]
        raw = file_fields(path)
        assert got["mood"] in raw.values() and got["mer_arousal"] in raw.values()
        read = registered_mediafile(path)
        assert (read.mood, read.mer_quadrant) == (got["mood"], got["mer_quadrant"])
        assert read.mer_valence == float(got["mer_valence"])

    # typed attributes: a numeric range query
    arousal = {p: float(f["mer_arousal"]) for p, f in fields.items()}
    cut = sorted(arousal.values())[len(arousal) // 2]
    assert set(beet.fields(f"mer_arousal:{cut}..")) == {p for p, a in arousal.items() if a >= cut}


def test_a_second_run_skips_and_force_analyses_again(model_dir, tmp_path) -> None:
    beet = Beets(tmp_path, model_dir)
    paths = songs(tmp_path / "music", ("flac", "mp3"))
    beet.import_(tmp_path / "music")
    beet("mer")
    tagged = {p: digest(p) for p in paths}

    again = beet("mer")
    assert "0 analysed, 2 skipped (already tagged by this model: 2)" in again.stderr
    assert f"mer: skipped {paths[0]}: already tagged by this model" in again.stderr
    assert {p: digest(p) for p in paths} == tagged
    quiet = beet("mer", "-q")
    assert "mer: skipped" not in quiet.stderr and "2 skipped" in quiet.stderr

    beet("modify", "-y", "-W", "format:MP3", "mer_valence=0.5")
    forced = beet("mer", "--force", "--nowrite", "format:MP3")
    assert "1 analysed" in forced.stderr and "mer: skipped" not in forced.stderr
    assert beet.fields()[str(paths[1])]["mer_valence"] == read_tags(paths[1])["MER_VALENCE"]
    assert {p: digest(p) for p in paths} == tagged  # --nowrite: the database only


def test_a_users_own_mood_is_kept_unless_forced(model_dir, tmp_path) -> None:
    beet = Beets(tmp_path, model_dir)
    (path,) = songs(tmp_path / "music", ("ogg",))
    beet.import_(tmp_path / "music")
    beet("modify", "-y", "-W", "mood=Melancholy")
    kept = beet("mer")
    assert "has a mood mer did not write" in kept.stderr
    assert beet.fields()[str(path)]["mood"] == "Melancholy"
    beet("mer", "-f")
    assert beet.fields()[str(path)]["mood"] != "Melancholy"


def test_writing_follows_the_import_setting_and_the_flags(model_dir, tmp_path) -> None:
    beet = Beets(tmp_path, model_dir, **{"import": {"write": False}})
    paths = songs(tmp_path / "music", ("flac", "m4a"))
    beet.import_(tmp_path / "music")
    before = {p: digest(p) for p in paths}
    beet("mer")  # import.write: no
    assert {p: digest(p) for p in paths} == before
    assert all(f["mer_model"] == RELEASE for f in beet.fields().values())
    assert not any(read_tags(p) for p in paths)
    beet("mer", "-w", "-f", "format:AAC")
    assert read_tags(paths[1])["MER_MODEL"] == RELEASE and not read_tags(paths[0])
    beet("write")  # beets writes the attributes it holds: the same fields
    assert read_tags(paths[0])["mood"] == beet.fields()[str(paths[0])]["mood"]


def test_id3v23_keeps_the_mood(model_dir, tmp_path) -> None:
    beet = Beets(tmp_path, model_dir, id3v23=True)
    (path,) = songs(tmp_path / "music", ("mp3",))
    beet.import_(tmp_path / "music")
    beet("mer")
    tags = ID3(path)
    assert tags.version == (2, 3, 0)
    assert "TMOO" not in tags and tags["TXXX:MOOD"].text == [beet.fields()[str(path)]["mood"]]
    assert read_tags(path)["mood"] == tags["TXXX:MOOD"].text[0]


def test_a_broken_file_is_logged_and_the_run_goes_on(model_dir, tmp_path) -> None:
    beet = Beets(tmp_path, model_dir, mer={"workers": 2})
    paths = songs(tmp_path / "music", ("flac", "mp3", "wav"))
    beet.import_(tmp_path / "music")
    write_broken(paths[1], "text")  # corrupted after the import
    paths[2].unlink()  # gone from the disk, still in the library

    result = beet("mer")
    errors = {line for line in result.stderr.splitlines() if line.startswith("mer: /")}
    assert errors == {
        f"mer: {paths[1]}: not a recognised audio file (unknown format or corrupt data)",
        f"mer: {paths[2]}: vanished during the run",
    }
    assert "1 analysed" in result.stderr and "1 failed" in result.stderr
    fields = beet.fields()
    assert fields[str(paths[0])]["mer_model"] == RELEASE
    assert fields[str(paths[1])]["mood"] == ""


def test_a_read_only_file_keeps_its_tags_and_the_run_goes_on(model_dir, tmp_path) -> None:
    """beets cannot write a read-only file: it says so, the result is stored in the
    database, the other files are tagged. (Read-only even for root: the file belongs to
    a user that a user namespace does not map.)"""
    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1): root writes any file")
    beet = Beets(tmp_path, model_dir)
    locked, free = songs(tmp_path / "music", ("flac", "ogg"))
    beet.import_(tmp_path / "music")
    os.chown(locked, 12345, 12345)
    os.chmod(locked, 0o444)
    before = digest(locked)
    beet.command = ["unshare", "--user", "--map-root-user", BEET]
    result = beet("mer")
    if "unshare:" in result.stderr:
        pytest.skip(f"no user namespaces here: {result.stderr.strip()}")
    assert f"error writing {locked}" in result.stderr
    assert "2 analysed" in result.stderr and "1 in the database only" in result.stderr
    assert digest(locked) == before and read_tags(free)["MER_MODEL"] == RELEASE
    assert beet.fields()[str(locked)]["mer_model"] == RELEASE


def test_the_import_stage(model_dir, tmp_path) -> None:
    """`auto: yes`: items are analysed on import; copied files are tagged in the library
    and the originals left alone."""
    beet = Beets(tmp_path, model_dir, mer={"auto": True}, **{"import": {"copy": True}})
    paths = songs(tmp_path / "music", ("flac", "mp3"))
    before = {p: digest(p) for p in paths}
    beet.import_(tmp_path / "music")
    fields = beet.fields()
    assert len(fields) == 2 and all(f["mer_model"] == RELEASE for f in fields.values())
    for path, got in fields.items():
        assert Path(path).is_relative_to(tmp_path / "library")
        assert read_tags(Path(path))["mood"] == got["mood"]
    assert {p: digest(p) for p in paths} == before
    assert "0 analysed, 2 skipped" in beet("mer").stderr

    off = Beets(tmp_path / "off", model_dir)  # auto: no
    off.import_(tmp_path / "music")
    assert all(f["mood"] == "" for f in off.fields().values())


# ------------------------------------------------------------------------------ mer tag


def test_beet_mer_and_mer_tag_write_the_same_tags(model_dir, tmp_path) -> None:
    """Byte for byte, per container: `mer tag` on one copy, `beet mer` on another; a
    library tagged by `mer tag` and then imported holds the results and is skipped."""
    formats = ("flac", "mp3", "m4a", "wav")
    by_beets = songs(tmp_path / "beets", formats)
    by_mer = songs(tmp_path / "mer", formats)
    env = {**os.environ, "MER_CACHE_DIR": str(tmp_path / "cache")}
    tagged = subprocess.run(
        [MER, "tag", tmp_path / "mer", "--model", model_dir, "--jobs", "1", "-q"],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    assert tagged.returncode == 0, tagged.stderr
    beet = Beets(tmp_path / "lib", model_dir)
    beet.import_(tmp_path / "beets")
    beet("mer")
    for ours, theirs in zip(by_beets, by_mer, strict=True):
        assert raw_tags(ours) == raw_tags(theirs) != []

    other = Beets(tmp_path / "lib2", model_dir)
    other.import_(tmp_path / "mer")  # beets reads mer's fields at import
    fields = other.fields()
    assert all(fields[str(p)]["mood"] == read_tags(p)["mood"] for p in by_mer)
    assert f"0 analysed, {len(formats)} skipped" in other("mer").stderr
    other("write", "-f")
    assert [raw_tags(p) for p in by_mer] == [raw_tags(p) for p in by_beets]


def test_beet_write_writes_what_mer_writes_in_every_container(tmp_path) -> None:
    """No model: values set with `beet modify`, written by `beet write`, against mer's
    own writer on a twin file, for each container both write (WavPack for APEv2)."""
    formats = (*FORMATS, "wv")
    by_beets = songs(tmp_path / "beets", formats)
    by_mer = songs(tmp_path / "mer", formats)
    values = {"mood": "Calm", "MER_VALENCE": 0.25, "MER_AROUSAL": 0.125, "MER_QUADRANT": "Q4"}
    values |= {"MER_CONFIDENCE": 0.5, "MER_MODEL": "some-model 2"}
    for path in by_mer:
        write_tags(path, values)
    beet = Beets(tmp_path / "lib", None)
    beet.import_(tmp_path / "beets")
    assert len(beet.fields()) == len(formats)
    beet("modify", "-y", "-W", *(f"{name.lower()}={value}" for name, value in values.items()))
    beet("write")
    for ours, theirs in zip(by_beets, by_mer, strict=True):
        assert raw_tags(ours) == raw_tags(theirs) != [], ours.suffix
        assert read_tags(ours) == read_tags(theirs)


def test_id3v23_under_beets_and_mer_tag_agree(model_dir, tmp_path) -> None:
    """An ID3v2.3 file: `mer tag` keeps it v2.3; beets with `id3v23: yes` writes the
    same frames, encoding included."""
    (ours,) = songs(tmp_path / "beets", ("mp3",))
    (theirs,) = songs(tmp_path / "mer", ("mp3",))
    ID3().save(theirs, v2_version=3)
    env = {**os.environ, "MER_CACHE_DIR": str(tmp_path / "cache")}
    command = [MER, "tag", theirs, "--model", model_dir, "--jobs", "1", "-q"]
    assert subprocess.run(command, capture_output=True, env=env, timeout=180).returncode == 0
    beet = Beets(tmp_path / "lib", model_dir, id3v23=True)
    beet.import_(tmp_path / "beets")
    beet("mer")
    assert ID3(theirs).version == ID3(ours).version == (2, 3, 0)
    assert raw_tags(ours) == raw_tags(theirs)


# ------------------------------------------------------------------------------ setup


def test_the_shipped_model_by_default(tmp_path) -> None:
    """docs/beets.md's first run: `plugins: mer`, nothing else, `beet mer`."""
    beet = Beets(tmp_path, None)
    (path,) = songs(tmp_path / "music", ("flac",))
    beet.import_(tmp_path / "music")
    beet("mer")
    assert beet.fields()[str(path)]["mer_model"].startswith("mer-4q")


def test_a_model_that_cannot_load_is_a_user_error(tmp_path) -> None:
    beet = Beets(tmp_path, tmp_path / "no-such-model")
    result = beet("mer", ok=False)
    assert result.returncode == 1 and "mer: cannot load the model" in result.stderr
    assert "Traceback" not in result.stderr


def test_device_cuda_without_a_gpu_is_a_user_error(model_dir, tmp_path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is here: --device cuda works")
    beet = Beets(tmp_path, model_dir)
    songs(tmp_path / "music", ("wav",))
    beet.import_(tmp_path / "music")
    result = beet("mer", "--device", "cuda", ok=False)
    assert result.returncode == 1 and "no CUDA device is available" in result.stderr
    assert "Traceback" not in result.stderr


def test_every_option_is_documented() -> None:
    doc = (Path(__file__).resolve().parents[1] / "docs" / "beets.md").read_text()
    for name in DEFAULTS:
        assert f"`{name}:" in doc, f"docs/beets.md does not describe `{name}`"
