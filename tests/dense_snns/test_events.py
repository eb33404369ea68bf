"""Event-camera readers against hand-made files with known events: N-MNIST's 40-bit format
(written here from its published bit layout), truncated and corrupt files, binning into
frames, the tf.data datasets and the tonic wrapper."""

import numpy as np
import pytest

from dense_snns.data import events as ev
from helpers import encode_nmnist, write_nmnist_tree


KNOWN = dict(x=[0, 33, 5, 17], y=[0, 2, 33, 9], p=[1, 0, 1, 1], t=[0, 1000, 2**23 - 1, 150_000])


def test_known_events_decode(tmp_path):
    path = tmp_path / "00001.bin"
    path.write_bytes(encode_nmnist(**KNOWN))
    events = ev.read_nmnist(path)
    assert events.dtype == ev.EVENT_DTYPE
    for key, values in KNOWN.items():
        assert events[key].tolist() == values


def test_truncated_file_names_the_file_and_offset(tmp_path):
    path = tmp_path / "cut.bin"
    path.write_bytes(encode_nmnist(**KNOWN)[:-2])
    with pytest.raises(ValueError, match=r"cut\.bin.*18 bytes.*truncated.*byte offset 15 and has only 3"):
        ev.read_nmnist(path)


def test_corrupt_event_names_the_file_and_offset(tmp_path):
    path = tmp_path / "bad.bin"
    path.write_bytes(encode_nmnist([1, 2, 40], [1, 2, 3], [0, 0, 0], [0, 1, 2]))
    with pytest.raises(ValueError, match=r"bad\.bin.*byte offset 10 has x=40, y=3, outside the 34 x 34 sensor"):
        ev.read_nmnist(path)
    with pytest.raises(FileNotFoundError, match="N-MNIST file not found"):
        ev.read_nmnist(tmp_path / "missing.bin")


def test_frames_put_each_event_in_its_bin_pixel_and_channel():
    events = ev._as_events((np.array([0, 3, 3]), np.array([1, 2, 2]), np.array([1, 0, 0]), np.array([0, 50, 99])))
    frames = ev.events_to_frames(events, nb_steps=4, sensor_size=(4, 3), duration=100)
    assert frames.shape == (4, 3, 4, 2)
    expected = np.zeros((4, 3, 4, 2), np.float32)
    expected[0, 1, 0, 1] = 1  # t=0 -> bin 0, row y=1, column x=0, ON
    expected[2, 2, 3, 0] = 1  # t=50 -> bin 2 (25 us bins), OFF
    expected[3, 2, 3, 0] = 1  # t=99 -> bin 3
    np.testing.assert_array_equal(frames, expected)
    # counts, pooled 2x2 pixels, one channel, flattened [time, rows * columns]
    counts = ev.events_to_frames(events, 1, (4, 3), duration=100, downsample=2, polarity=False, binary=False)
    assert counts.shape == (1, 2, 2, 1)
    assert counts[0, :, :, 0].tolist() == [[1, 0], [0, 2]]
    flat = ev.events_to_frames(
        events, 1, (4, 3), duration=100, downsample=2, polarity=False, binary=False, flatten=True
    )
    np.testing.assert_array_equal(flat, counts.reshape(1, -1))


def test_frames_refuse_events_outside_the_sensor():
    with pytest.raises(ValueError, match=r"event 1 \(x=4, y=0, p=0, t=3\) is outside the 4 x 3 sensor"):
        ev.events_to_frames(([0, 4], [0, 0], [0, 0], [1, 3]), 2, (4, 3))
    with pytest.raises(ValueError, match="missing"):
        ev.events_to_frames(np.zeros(3, [("x", int), ("y", int)]), 2, (4, 3))
    with pytest.raises(ValueError, match="nb_steps must be a positive integer"):
        ev.events_to_frames(([0], [0], [0], [1]), 0, (4, 3))


def test_nmnist_dataset_reads_the_folder_tree(tmp_path):
    truth = write_nmnist_tree(tmp_path)
    paths, labels = ev.nmnist_files(tmp_path, "test")
    assert len(paths) == 6 and labels.tolist() == [0, 0, 1, 1, 2, 2]
    ds = ev.nmnist_dataset(tmp_path, "test", nb_steps=10, downsample=2, batch_size=4, shuffle=False)
    batches = list(ds)
    assert [tuple(x.shape) for x, _ in batches] == [(4, 10, 17, 17, 2), (2, 10, 17, 17, 2)]
    x = np.concatenate([b[0].numpy() for b in batches])
    for i, path in enumerate(paths):
        digit, sample = truth[path]
        want = ev.events_to_frames(tuple(np.array(sample[k]) for k in "xypt"), 10, (34, 34), 300_000, 2)
        np.testing.assert_array_equal(x[i], want)
    flat = next(iter(ev.nmnist_dataset(tmp_path, "train", nb_steps=5, flatten=True, batch_size=6, seed=1)))
    assert flat[0].shape == (6, 5, 34 * 34 * 2) and sorted(flat[1].numpy().tolist()) == [0, 0, 1, 1, 2, 2]
    assert len(list(ev.nmnist_dataset(tmp_path, "train", max_samples=3, batch_size=1, seed=0))) == 3


def test_nmnist_dataset_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="N-MNIST folder not found"):
        ev.nmnist_dataset(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="has no Train/ folder"):
        ev.nmnist_dataset(tmp_path)
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        ev.nmnist_dataset(tmp_path, "valid")


def test_in_memory_events_and_a_tonic_style_dataset():
    samples = [
        (np.array([0, 1]), np.array([0, 1]), np.array([1, 1]), np.array([0, 10])),
        (np.array([2]), np.array([2]), np.array([0]), np.array([5])),
    ]
    ds = ev.events_dataset(samples, [3, 4], sensor_size=(3, 3), nb_steps=2, duration=20, batch_size=2)
    x, y = next(iter(ds))
    assert x.shape == (2, 2, 3, 3, 2) and y.numpy().tolist() == [3, 4]
    assert x.numpy()[0, 1, 1, 1, 1] == 1 and x.numpy()[1, 0, 2, 2, 0] == 1

    class TonicLike:  # tonic's protocol: len, items (structured events, target), sensor_size (x, y, p)
        sensor_size = (3, 3, 2)

        def __len__(self):
            return 2

        def __getitem__(self, i):
            return ev._as_events(samples[i]), [3, 4][i]

    x2, y2 = next(iter(ev.from_tonic(TonicLike(), nb_steps=2, duration=20, batch_size=2)))
    np.testing.assert_array_equal(x2.numpy(), x.numpy())
    assert y2.numpy().tolist() == [3, 4]
    with pytest.raises(ValueError, match="samples and labels must have one entry each"):
        ev.events_dataset(samples, [1], (3, 3), 2)


def test_literal_bytes_of_the_published_layout():
    # x=33, y=2, ON, t=1000 us: 0x21 0x02 | 1 in bit 23 | 1000 = 0x0003e8
    events = ev.decode_nmnist(b"\x21\x02\x80\x03\xe8")
    assert (int(events["x"][0]), int(events["y"][0]), int(events["p"][0]), int(events["t"][0])) == (33, 2, 1, 1000)


def test_overflow_markers_raise_later_time_stamps():
    data = encode_nmnist([1, 0, 2], [1, 240, 3], [0, 0, 1], [500, 0, 10])
    events = ev.decode_nmnist(data)
    assert events["x"].tolist() == [1, 2] and events["t"].tolist() == [500, 10 + ev.OVERFLOW_US]


def test_an_empty_file_and_a_sample_without_events(tmp_path):
    path = tmp_path / "empty.bin"
    path.write_bytes(b"")
    events = ev.read_nmnist(path)
    assert events.shape == (0,)
    frames = ev.events_to_frames(events, 5, (34, 34), duration=300_000)
    assert frames.shape == (5, 34, 34, 2) and frames.sum() == 0
    assert ev.events_to_frames(events, 5, (34, 34)).sum() == 0  # no duration, no events


def test_bins_are_exact_at_their_boundaries():
    # 300 ms in 30 bins of 10 ms: an event at exactly k * 10 ms opens bin k
    t = np.arange(0, 300_000, 10_000)
    events = (np.zeros_like(t), np.zeros_like(t), np.zeros_like(t), t)
    frames = ev.events_to_frames(events, 30, (1, 1), duration=300_000, polarity=False, flatten=True)
    np.testing.assert_array_equal(frames[:, 0], np.ones(30))
    late = ev.events_to_frames(([0], [0], [0], [9_999]), 30, (1, 1), duration=300_000, flatten=True)
    assert late[0].sum() == 1  # 9.999 ms is still bin 0
    after = ev.events_to_frames(([0], [0], [0], [400_000]), 30, (1, 1), duration=300_000, flatten=True)
    assert after[-1].sum() == 1  # after the window: the last bin
