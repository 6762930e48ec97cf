"""Reference outputs of the original musicnn taggers (TensorFlow) for tests/test_musicnn.py.

Runs in a throwaway virtualenv, never in the project's own:

    python3.11 -m venv /tmp/tfvenv
    /tmp/tfvenv/bin/pip install tensorflow-cpu==2.15.1 "numpy<2" librosa==0.9.2 soundfile
    /tmp/tfvenv/bin/pip install --no-deps musicnn-0.1.0-py3-none-any.whl
    /tmp/tfvenv/bin/python tools/make_musicnn_fixtures.py

For a few deterministic generated signals it stores, under tests/fixtures/musicnn/:
  signal_<name>.npy   the signal, int16 PCM at 16 kHz (what the original decoded, / 32768)
  patches.npy         the original's log-mel input patches from its librosa front-end (which
                      rounds the mel power to float16 before the log; ends reflect-padded as
                      with librosa 0.7, see below), (N, 187, 96) float32
  index.json          which patches belong to which signal, the models, tool versions
and for each of the wheel's four taggers (`MODELS`: our backbone name -> its checkpoint),
in <backbone>/:
  tags.npy            tag probabilities from the graph, (N, 50) float32
  embedding.npy       the embedding our backbone returns, from the graph: musicnn's
                      penultimate layer (N, 200), vgg's pool5 flattened (N, 256); float32
All patches go through each graph as one batch. The per-patch features are read from the
graph itself: musicnn 0.1.0's `extractor` repeats the first batch's vector in
`features['penultimate']` for every later batch.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
from pathlib import Path

import numpy as np

SR = 16000
N_FRAMES = 187  # 3 s patches, no overlap (musicnn's defaults)
MODELS = {  # our backbone -> the wheel's checkpoint
    "musicnn-msd": "MSD_musicnn",
    "musicnn-mtt": "MTT_musicnn",
    "vgg-msd": "MSD_vgg",
    "vgg-mtt": "MTT_vgg",
}
OUT_DIR = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "musicnn"


def _fade(x: np.ndarray, seconds: float = 0.01) -> np.ndarray:
    n = int(seconds * SR)
    ramp = np.linspace(0.0, 1.0, n)
    x[:n] *= ramp
    x[-n:] *= ramp[::-1]
    return x


def _harmonic_note(freq: float, t: np.ndarray, n_harmonics: int = 5) -> np.ndarray:
    return sum(np.sin(2 * np.pi * freq * k * t) / k for k in range(1, n_harmonics + 1))


def tone(seconds: float = 3.0) -> np.ndarray:
    """A 440 Hz sine with a quieter octave and a slow tremolo."""
    t = np.arange(int(seconds * SR)) / SR
    x = np.sin(2 * np.pi * 440 * t) + 0.3 * np.sin(2 * np.pi * 880 * t)
    return _fade(0.4 * x * (1 + 0.2 * np.sin(2 * np.pi * 3 * t)))


def chords(seconds: float = 6.0) -> np.ndarray:
    """Am, F, C, G triads with harmonics and a plucked decay, 1.5 s each."""
    roots = [(220.0, 261.63, 329.63), (174.61, 220.0, 261.63), (261.63, 329.63, 392.0)]
    roots.append((196.0, 246.94, 293.66))
    n_chord = int(1.5 * SR)
    t = np.arange(n_chord) / SR
    parts = [sum(_harmonic_note(f, t) for f in chord) * np.exp(-2.0 * t) for chord in roots]
    x = np.concatenate(parts)[: int(seconds * SR)]
    return _fade(0.25 * x / np.abs(x).max() * 2)


def noise(seconds: float = 3.0, seed: int = 20190916) -> np.ndarray:
    """White Gaussian noise through a one-pole low-pass (brownish), seeded."""
    rng = np.random.default_rng(seed)
    white = rng.standard_normal(int(seconds * SR))
    y = np.empty_like(white)
    acc = 0.0
    for i, w in enumerate(white):
        acc = 0.95 * acc + w
        y[i] = acc
    return _fade(0.3 * y / np.abs(y).max())


def beat(seconds: float = 6.0, bpm: float = 120.0, seed: int = 7) -> np.ndarray:
    """Kick on every beat, noise hi-hat on off-beats, a two-note bass line."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    x = np.zeros(n)
    step = int(60 / bpm * SR)
    t = np.arange(step) / SR
    kick = np.sin(2 * np.pi * (50 + 100 * np.exp(-30 * t)) * t) * np.exp(-12 * t)
    hat = rng.standard_normal(step // 4) * np.exp(-60 * t[: step // 4])
    for i, start in enumerate(range(0, n - step + 1, step)):
        x[start : start + step] += kick
        x[start + step // 2 : start + step // 2 + len(hat)] += 0.3 * hat
        x[start : start + step] += 0.3 * np.sin(2 * np.pi * (55 if i % 2 else 82.4) * t)
    return _fade(0.45 * x / np.abs(x).max())


SIGNALS = {"tone": tone, "chords": chords, "noise": noise, "beat": beat}


def to_pcm16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 32768), -32768, 32767).astype(np.int16)


def reflect_padding_as_in_librosa_07() -> None:
    """musicnn 0.1.0 came out (and was trained) with librosa 0.7, whose melspectrogram
    reflect-pads the signal's ends (center=True); librosa >= 0.9 pads with zeros instead,
    which changes the first and last frames. Restore 0.7's default in the original code."""
    import librosa

    melspectrogram = librosa.feature.melspectrogram
    if getattr(melspectrogram, "keywords", {}).get("pad_mode") != "reflect":
        librosa.feature.melspectrogram = functools.partial(melspectrogram, pad_mode="reflect")


def original_patches(pcm: np.ndarray, workdir: Path) -> np.ndarray:
    """The original's own front-end (librosa.load + melspectrogram + its float16 log)."""
    import soundfile as sf
    from musicnn.extractor import batch_data

    reflect_padding_as_in_librosa_07()

    path = workdir / "signal.wav"
    sf.write(path, pcm, SR, subtype="PCM_16")
    batch, _ = batch_data(str(path), N_FRAMES, N_FRAMES)
    return batch


def run_graph(patches: np.ndarray, model: str) -> tuple[np.ndarray, np.ndarray]:
    """Tag probabilities and embeddings (the graph's last output: musicnn's penultimate,
    vgg's pool5, flattened) of one original graph, one batch."""
    import musicnn
    import tensorflow as tf
    from musicnn import models

    tf.compat.v1.disable_eager_execution()
    tf.compat.v1.reset_default_graph()
    with tf.name_scope("model"):
        x = tf.compat.v1.placeholder(tf.float32, [None, N_FRAMES, 96])
        is_training = tf.compat.v1.placeholder(tf.bool)
        outputs = models.define_model(x, is_training, model, 50)
        logits, embedding = outputs[0], tf.compat.v1.layers.flatten(outputs[-1])
        probs = tf.nn.sigmoid(logits)
    with tf.compat.v1.Session() as sess:
        sess.run(tf.compat.v1.global_variables_initializer())
        checkpoint = os.path.join(os.path.dirname(musicnn.__file__), model) + "/"
        tf.compat.v1.train.Saver().restore(sess, checkpoint)
        feed = {x: patches.astype(np.float32), is_training: False}
        return sess.run([probs, embedding], feed_dict=feed)


def check_against_extractor(pcm: np.ndarray, probs: np.ndarray, model: str, workdir: Path) -> None:
    """The graph run here must give the extractor's own taggram (its tags are right)."""
    import soundfile as sf
    from musicnn.extractor import extractor

    reflect_padding_as_in_librosa_07()
    path = workdir / "check.wav"
    sf.write(path, pcm, SR, subtype="PCM_16")
    taggram, _ = extractor(str(path), model=model, extract_features=False)
    np.testing.assert_allclose(taggram, probs, atol=1e-5)


def versions() -> dict[str, str]:
    from importlib.metadata import version

    names = ["musicnn", "tensorflow-cpu", "librosa", "numpy", "soundfile"]
    return {name: version(name) for name in names}


def main() -> None:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    index, all_patches = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        for name, make in SIGNALS.items():
            pcm = to_pcm16(make())
            np.save(OUT_DIR / f"signal_{name}.npy", pcm)
            patches = original_patches(pcm, Path(tmp))
            start = sum(len(p) for p in all_patches)
            index[name] = {"patches": [start, start + len(patches)], "samples": len(pcm)}
            all_patches.append(patches)
        patches = np.concatenate(all_patches)
        for backbone, model in MODELS.items():
            probs, embedding = run_graph(patches, model)
            for name, entry in index.items():
                a, b = entry["patches"]
                pcm = np.load(OUT_DIR / f"signal_{name}.npy")
                check_against_extractor(pcm, probs[a:b], model, Path(tmp))
            (OUT_DIR / backbone).mkdir(exist_ok=True)
            np.save(OUT_DIR / backbone / "tags.npy", probs.astype(np.float32))
            np.save(OUT_DIR / backbone / "embedding.npy", embedding.astype(np.float32))
    np.save(OUT_DIR / "patches.npy", patches.astype(np.float32))
    meta = {"sample_rate": SR, "models": MODELS, "signals": index, "versions": versions()}
    (OUT_DIR / "index.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"{len(patches)} patches from {len(index)} signals -> {OUT_DIR}")


if __name__ == "__main__":
    main()
