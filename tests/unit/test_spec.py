"""StreamSpec: Keras' defaults, strict validation that names the field, resolved dtype."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from augstream_protocol.fields import Position, Shard
from augstream_protocol.spec import StreamSpec


def spec(**fields: Any) -> StreamSpec:
    return StreamSpec(dataset="pets", **fields)


def failing_fields(error: ValidationError) -> set[str]:
    """The top-level fields an error is about (not fields merely quoted in an input value)."""
    return {str(e["loc"][0]) for e in error.errors() if e["loc"]}


# The defaults of keras.src.legacy.preprocessing.image: ImageDataGenerator.__init__ and
# ImageDataGenerator.flow_from_directory.
KERAS_DEFAULTS = {
    "target_size": (256, 256),
    "color_mode": "rgb",
    "classes": None,
    "class_mode": "categorical",
    "batch_size": 32,
    "shuffle": True,
    "seed": None,
    "interpolation": "nearest",
    "keep_aspect_ratio": False,
    "rotation_range": 0,
    "width_shift_range": 0.0,
    "height_shift_range": 0.0,
    "brightness_range": None,
    "shear_range": 0.0,
    "zoom_range": 0.0,
    "channel_shift_range": 0.0,
    "fill_mode": "nearest",
    "cval": 0.0,
    "horizontal_flip": False,
    "vertical_flip": False,
    "rescale": None,
    "samplewise_center": False,
    "samplewise_std_normalization": False,
    "interpolation_order": 1,
}


@pytest.mark.parametrize(("name", "expected"), KERAS_DEFAULTS.items())
def test_defaults_match_keras(name: str, expected: object) -> None:
    assert getattr(spec(), name) == expected


def test_defaults_start_at_the_beginning_unsharded_and_endless() -> None:
    s = spec()
    assert (s.start.epoch, s.start.batch) == (0, 0)
    assert (s.shard.index, s.shard.count) == (0, 1)
    assert s.epochs is None
    assert s.channels == 3


def test_dataset_is_required() -> None:
    with pytest.raises(ValidationError, match="dataset"):
        StreamSpec()  # type: ignore[call-arg]


@pytest.mark.parametrize("key", ["rotation", "featurewise", "directory", "zca_epsilon"])
def test_unknown_keys_are_rejected_by_name(key: str) -> None:
    with pytest.raises(ValidationError, match=key) as info:
        spec(**{key: 1})
    assert failing_fields(info.value) == {key}


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 100_000}, "batch_size"),
        ({"rotation_range": -1}, "rotation_range"),
        ({"shear_range": -5}, "shear_range"),
        ({"zoom_range": 1.5}, "zoom_range"),
        ({"zoom_range": -0.1}, "zoom_range"),
        ({"zoom_range": [2, 1]}, "zoom_range"),
        ({"zoom_range": [0, 1]}, "zoom_range"),
        ({"brightness_range": [2, 1]}, "brightness_range"),
        ({"brightness_range": [-1, 1]}, "brightness_range"),
        ({"target_size": (0, 64)}, "target_size"),
        ({"target_size": (64, 100_000)}, "target_size"),
        ({"target_size": (64,)}, "target_size"),
        ({"shard": (3, 3)}, "shard"),
        ({"shard": (5, 2)}, "shard"),
        ({"shard": (0, 0)}, "shard"),
        ({"start": (-1, 0)}, "start"),
        ({"start": (1, 2, 3)}, "start"),
        ({"color_mode": "cmyk"}, "color_mode"),
        ({"class_mode": "multi"}, "class_mode"),
        ({"fill_mode": "mirror"}, "fill_mode"),
        ({"interpolation": "cubic"}, "interpolation"),
        ({"interpolation_order": 2}, "interpolation_order"),
        ({"dtype": "float64"}, "dtype"),
        ({"seed": -1}, "seed"),
        ({"epochs": 0}, "epochs"),
        ({"width_shift_range": -0.1}, "width_shift_range"),
        ({"height_shift_range": float("inf")}, "height_shift_range"),
        ({"width_shift_range": []}, "width_shift_range"),
        ({"rescale": float("nan")}, "rescale"),
        ({"classes": ["cat", "cat"]}, "classes"),
        ({"classes": []}, "classes"),
    ],
)
def test_out_of_range_values_raise_naming_the_field(fields: dict[str, Any], named: str) -> None:
    with pytest.raises(ValidationError) as info:
        spec(**fields)
    assert failing_fields(info.value) == {named}
    assert named in str(info.value)


@pytest.mark.parametrize(
    "dataset",
    [
        "a/b",
        "../etc",
        "/abs",
        "a\\b",
        "",
        "x" * 201,
        "name with space",
        "a%2fb",
        "..",
        ".",
        ".hidden",
    ],
)
def test_dataset_names_that_could_be_paths_are_rejected(dataset: str) -> None:
    with pytest.raises(ValidationError) as info:
        StreamSpec(dataset=dataset)
    assert failing_fields(info.value) == {"dataset"}


@pytest.mark.parametrize("dataset", ["pets", "cats-vs-dogs", "imagenet_1k.v2", "A9"])
def test_plain_dataset_names_are_accepted(dataset: str) -> None:
    assert StreamSpec(dataset=dataset).dataset == dataset


# --- resolved dtype --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "dtype"),
    [
        ({}, "uint8"),
        ({"rotation_range": 30, "horizontal_flip": True}, "uint8"),
        ({"rescale": 1 / 255}, "float32"),
        ({"samplewise_center": True}, "float32"),
        ({"samplewise_std_normalization": True}, "float32"),
        ({"dtype": "float32"}, "float32"),
    ],
)
def test_dtype_resolves_to_what_the_output_needs(fields: dict[str, Any], dtype: str) -> None:
    s = spec(**fields)
    assert s.dtype == dtype
    assert s.output_dtype == dtype


@pytest.mark.parametrize(
    "fields",
    [{"rescale": 1 / 255}, {"samplewise_center": True}, {"samplewise_std_normalization": True}],
)
def test_explicit_uint8_with_a_float_result_is_rejected(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="dtype"):
        spec(dtype="uint8", **fields)


def test_samplewise_std_normalization_implies_samplewise_center() -> None:
    assert spec(samplewise_std_normalization=True).samplewise_center is True


def test_resolved_spec_survives_a_json_round_trip() -> None:
    s = spec(samplewise_std_normalization=True, rescale=0.5, seed=3, start=(1, 2), shard=(1, 4))
    again = StreamSpec.model_validate_json(s.model_dump_json())
    assert again == s
    assert again.dtype == "float32"


# --- pairs and shift ranges ------------------------------------------------------------------


@pytest.mark.parametrize("pair", [(2, 5), [2, 5]])
def test_start_and_shard_accept_pairs(pair: Any) -> None:
    s = spec(start=pair, shard=pair)
    assert s.start == Position(epoch=2, batch=5)
    assert s.shard == Shard(index=2, count=5)


def test_start_and_shard_accept_objects() -> None:
    s = spec(start={"epoch": 1, "batch": 3}, shard={"index": 0, "count": 2})
    assert (s.start.epoch, s.start.batch, s.shard.index, s.shard.count) == (1, 3, 0, 2)


@pytest.mark.parametrize(
    ("value", "kind"),
    [(2, int), (2.0, float), (0.1, float), (0, int), ([-4.0, 0.0, 4.0], list)],
)
def test_shift_ranges_keep_int_or_float_through_json(value: Any, kind: type) -> None:
    s = spec(width_shift_range=value, height_shift_range=value)
    again = StreamSpec.model_validate_json(s.model_dump_json())
    for parsed in (s, again):
        for shift in (parsed.width_shift_range, parsed.height_shift_range):
            assert type(shift) is kind
            assert shift == value


def test_shift_range_from_raw_json_keeps_its_type() -> None:
    s = StreamSpec.model_validate_json(
        '{"dataset": "pets", "width_shift_range": 2, "height_shift_range": 2.0}'
    )
    assert type(s.width_shift_range) is int
    assert type(s.height_shift_range) is float


# --- epochs and copies -----------------------------------------------------------------------


@pytest.mark.parametrize("start_epoch", [3, 4])
def test_start_epoch_at_or_past_epochs_is_rejected(start_epoch: int) -> None:
    with pytest.raises(ValidationError, match="epochs"):
        spec(epochs=3, start=(start_epoch, 0))


def test_start_epoch_in_the_last_epoch_is_accepted() -> None:
    assert spec(epochs=3, start=(2, 7)).start == Position(epoch=2, batch=7)


def test_with_start_and_with_seed_return_updated_copies() -> None:
    original = spec(rotation_range=10, epochs=5)
    moved = original.with_start(3, 4)
    seeded = original.with_seed(99)
    assert moved.start == Position(epoch=3, batch=4)
    assert seeded.seed == 99
    assert original.start == Position() and original.seed is None
    assert moved.model_copy(update={"start": Position()}) == original
    assert seeded.model_copy(update={"seed": None}) == original


def test_specs_are_frozen() -> None:
    with pytest.raises(ValidationError, match="frozen"):
        spec().batch_size = 64  # type: ignore[misc]


def test_with_start_past_epochs_is_rejected() -> None:
    with pytest.raises(ValidationError, match="epochs"):
        spec(epochs=2).with_start(5, 0)


@pytest.mark.parametrize("seed", [-1, 2**64])
def test_with_seed_out_of_range_is_rejected(seed: int) -> None:
    with pytest.raises(ValidationError, match="seed"):
        spec().with_seed(seed)


def test_featurewise_flags_resolve_as_in_keras() -> None:
    # ZCA centres and replaces std normalisation; std normalisation implies centring.
    zca = spec(zca_whitening=True, featurewise_std_normalization=True)
    assert zca.featurewise_center and not zca.featurewise_std_normalization
    assert spec(featurewise_std_normalization=True).featurewise_center
    assert zca.dtype == "float32"
    with pytest.raises(ValidationError, match="dtype='uint8' cannot carry the result of feat"):
        spec(featurewise_center=True, dtype="uint8")


def test_stats_without_their_flag_are_refused_by_name() -> None:
    digest = "0" * 64
    with pytest.raises(ValidationError, match=r"stats\.std is given but featurewise_std_norm"):
        spec(featurewise_center=True, stats={"mean": digest, "std": digest})
    kept = spec(featurewise_center=True, stats={"mean": digest})
    assert kept.stats is not None and kept.stats.mean == digest
