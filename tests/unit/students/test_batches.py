"""Tests for the in-memory tensors, batching, augmentation and normalisation."""
import numpy as np
import pytest
import torch

from extractor.datasets.transforms import PreprocessSpec
from extractor.datasets.transforms import normalize as preprocess_normalize
from extractor.students.batches import (
    DistilTensors,
    InputConfig,
    augment,
    epoch_generator,
    eval_batches,
    normalize,
    num_batches,
    train_batches,
)
from extractor.students.losses import teacher_log_probs


def _images(n=16, channels=3, side=16, seed=0):
    return torch.randint(0, 256, (n, channels, side, side), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(seed))


def _data(n=10, classes=4):
    scores = torch.softmax(torch.randn(n, classes, generator=torch.Generator().manual_seed(1)), dim=1)
    return DistilTensors.from_teacher(_images(n, side=8), scores.argmax(dim=1), scores, "probs", 2.0,
                                      truth=torch.arange(n))


def test_from_teacher_tempers_once_and_masks_label_only_rows():
    scores = torch.tensor([[0.7, 0.3], [0.0, 0.0], [2.0, -1.0]])
    data = DistilTensors.from_teacher(_images(3), torch.tensor([0, 1, 0]), scores, ["probs", "label", "logits"], 3.0)
    assert data.soft_mask.tolist() == [True, False, True]
    assert torch.equal(data.teacher_log_probs, teacher_log_probs(scores, ["probs", "label", "logits"], 3.0))


@pytest.mark.parametrize(("field", "value", "match"), [
    ("images", torch.zeros(10, 3, 8, 8), "images"),
    ("labels", torch.zeros(10, dtype=torch.int32), "labels"),
    ("labels", torch.full((10,), 4), r"labels must lie in \[0, 4\)"),
    ("teacher_log_probs", torch.full((10, 4), float("nan")), "never NaN"),
    ("soft_mask", torch.ones(9, dtype=torch.bool), "soft_mask"),
    ("truth", torch.zeros(10, dtype=torch.float32), "truth"),
])
def test_tensors_are_checked_on_construction(field, value, match):
    data = _data()
    fields = {name: getattr(data, name) for name in ("images", "labels", "teacher_log_probs", "soft_mask", "truth")}
    fields[field] = value
    with pytest.raises(ValueError, match=match):
        DistilTensors(**fields)


def test_subset_keeps_rows_aligned():
    data = _data()
    part = data.subset(torch.tensor([7, 2]))
    assert len(part) == 2
    assert torch.equal(part.images[1], data.images[2])
    assert torch.equal(part.teacher_log_probs[0], data.teacher_log_probs[7])
    assert part.truth.tolist() == [data.truth[7].item(), data.truth[2].item()]


@pytest.mark.parametrize(("kwargs", "flag"), [({"std": (0.0,)}, "--std"), ({"shift_frac": 0.5}, "--shift"),
                                              ({"mean": ()}, "--mean")])
def test_input_config_rejects_invalid_values_naming_the_flag(kwargs, flag):
    with pytest.raises(ValueError, match=flag):
        InputConfig(**kwargs)


def test_normalize_is_the_teacher_preprocessing_formula():
    images = _images(4)
    spec = PreprocessSpec(size=16, mean=(120.0, 110.0, 100.0), std=(60.0, 50.0, 40.0))
    expected = preprocess_normalize(images.permute(0, 2, 3, 1).numpy(), spec)  # (pixel - mean) / std
    actual = normalize(images, InputConfig(mean=spec.mean, std=spec.std))
    assert np.array_equal(actual.numpy(), expected)


def test_augment_without_flip_or_shift_only_normalises():
    images = _images()
    cfg = InputConfig(mean=(100.0,), std=(50.0,), flip=False, shift_frac=0.0)
    assert torch.equal(augment(images, torch.Generator().manual_seed(0), cfg), normalize(images, cfg))


def _candidates(image: torch.Tensor, pad: int) -> dict[tuple[int, int, bool], torch.Tensor]:
    """Every flip/translation of one image, the slow way: replicate-pad, crop at the shift, mirror."""
    side = image.shape[-1]
    padded = torch.nn.functional.pad(image[None].float(), (pad, pad, pad, pad), mode="replicate")[0]
    out = {}
    for dy in range(-pad, pad + 1):
        for dx in range(-pad, pad + 1):
            crop = padded[:, pad + dy:pad + dy + side, pad + dx:pad + dx + side]
            out[dy, dx, False], out[dy, dx, True] = crop, crop.flip(-1)
    return out


def test_augment_is_a_per_image_random_flip_and_translation():
    images = _images(n=64, side=16)
    cfg = InputConfig(mean=(0.0,), std=(1.0,), flip=True, shift_frac=0.125)  # identity normalisation
    out = augment(images, torch.Generator().manual_seed(0), cfg)
    seen = set()
    for image, augmented in zip(images, out, strict=True):
        matches = [key for key, candidate in _candidates(image, pad=2).items()  # pad = round(16 * 0.125)
                   if torch.equal(candidate, augmented)]
        assert matches, "an augmented image is no flip/translation of its source"
        seen.add(matches[0])
    assert {flip for _, _, flip in seen} == {False, True}
    assert len({(dy, dx) for dy, dx, _ in seen}) > 10  # the shifts really vary per image


def test_augment_is_reproducible_from_the_generator():
    images = _images()
    cfg = InputConfig()
    first = augment(images, torch.Generator().manual_seed(5), cfg)
    assert torch.equal(first, augment(images, torch.Generator().manual_seed(5), cfg))
    assert not torch.equal(first, augment(images, torch.Generator().manual_seed(6), cfg))


def test_epoch_generators_depend_on_seed_and_epoch_only():
    def draw(seed, epoch):
        return torch.randint(0, 2**30, (4,), generator=epoch_generator(seed, epoch)).tolist()
    assert draw(0, 3) == draw(0, 3)
    assert len({tuple(draw(seed, epoch)) for seed, epoch in [(0, 1), (1, 0), (0, 0), (1, 1)]}) == 4


def test_an_epoch_visits_every_row_once_in_a_reproducible_order():
    data = _data(n=10)  # truth holds row ids
    cfg = InputConfig(flip=False, shift_frac=0.0)

    def sizes_and_rows(epoch):
        batches = list(train_batches(data, 4, seed=0, epoch=epoch, inputs=cfg))
        return [len(b.labels) for b in batches], torch.cat([b.truth for b in batches]).tolist()

    sizes, rows = sizes_and_rows(epoch=0)
    assert sizes == [4, 4, 2] and num_batches(10, 4) == 3
    assert sorted(rows) == list(range(10))
    assert rows != list(range(10))
    assert sizes_and_rows(epoch=0)[1] == rows
    assert sizes_and_rows(epoch=1)[1] != rows


def test_batches_keep_inputs_and_targets_aligned():
    data = _data(n=10)
    cfg = InputConfig(flip=False, shift_frac=0.0)
    for batch in train_batches(data, 3, seed=1, epoch=0, inputs=cfg):
        rows = batch.truth  # row ids
        assert torch.equal(batch.inputs, normalize(data.images[rows], cfg))
        assert torch.equal(batch.teacher_log_probs, data.teacher_log_probs[rows])
        assert torch.equal(batch.labels, data.labels[rows])
        assert torch.equal(batch.soft_mask, data.soft_mask[rows])


def test_eval_batches_are_in_order_and_never_augmented():
    data = _data(n=10)
    cfg = InputConfig(mean=(10.0,), std=(20.0,), flip=True, shift_frac=0.25)
    batches = list(eval_batches(data, 4, inputs=cfg))
    assert torch.equal(torch.cat([b.inputs for b in batches]), normalize(data.images, cfg))
    assert torch.equal(torch.cat([b.labels for b in batches]), data.labels)


def test_an_epoch_visits_each_image_once_through_one_of_its_views():
    # images 0..3 with 1, 2, 3 and 4 views: row i shows image group[i]
    group = torch.tensor([0, 1, 1, 2, 2, 2, 3, 3, 3, 3])
    images = group.view(-1, 1, 1, 1).expand(-1, 1, 2, 2).to(torch.uint8).contiguous() * 10 + \
        torch.arange(10, dtype=torch.uint8).view(-1, 1, 1, 1)  # pixel = 10 * image + row
    plain = DistilTensors.from_teacher(images, group.clone(), torch.full((10, 4), 0.25), "probs", 1.0)
    data = DistilTensors(images=plain.images, labels=plain.labels, teacher_log_probs=plain.teacher_log_probs,
                         soft_mask=plain.soft_mask, group=group)
    assert data.num_images == 4 and len(data) == 10
    cfg = InputConfig(mean=(0.0,), std=(1.0,), flip=False, shift_frac=0.0)
    seen = []
    for epoch in range(30):
        rows = [int(x) for batch in train_batches(data, 3, seed=0, epoch=epoch, inputs=cfg)
                for x in batch.inputs[:, 0, 0, 0]]
        assert sorted(row // 10 for row in rows) == [0, 1, 2, 3]  # each image once
        assert all(group[row % 10] == row // 10 for row in rows)  # a row of that image, its own label
        seen += rows
    assert {row % 10 for row in seen} == set(range(10))  # every view gets drawn


def test_crop_takes_a_square_of_at_least_the_scale_resized_back():
    images = torch.arange(256).view(1, 1, 16, 16).expand(64, 1, 16, 16).to(torch.uint8).contiguous()
    cfg = InputConfig(mean=(0.0,), std=(1.0,), flip=False, shift_frac=0.0, crop_scale=0.5)
    out = augment(images, torch.Generator().manual_seed(0), cfg)
    assert out.shape == images.shape and not torch.equal(out, images.float())
    source = images[0, 0].numpy()
    for crop in out[:, 0].numpy():
        rows = {np.argwhere(source == value)[0][0] for value in crop[:, 0]}
        assert 8 <= max(rows) - min(rows) + 1 <= 16  # the crop spans at least half the side
    assert torch.equal(augment(images, torch.Generator().manual_seed(0), cfg), out)
