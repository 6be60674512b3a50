import numpy as np
import pytest

from sensitivity.model.wrn import blocks_per_group, build_wrn


def test_parameter_counts_match_the_paper():
    # Zagoruyko and Komodakis (2016), table 1: WRN-16-4 has 2.7M parameters; WRN-16-2 0.69M.
    # Our count adds the 6 non-trainable constants of the Normalization layer (mean, variance)
    # plus its count, which keras reports among the parameters.
    assert build_wrn(16, 4).count_params() == 2_752_506
    assert build_wrn(16, 2).count_params() == 693_498
    assert build_wrn(28, 10).count_params() == pytest.approx(36.5e6, rel=0.01)


def test_depth_must_be_6n_plus_4():
    assert blocks_per_group(16) == 2
    assert blocks_per_group(28) == 4
    for bad in (8, 15, 17):
        with pytest.raises(ValueError, match="6n\\+4"):
            blocks_per_group(bad)


def test_readable_stable_layer_names():
    model = build_wrn(16, 2)
    names = {layer.name for layer in model.layers}
    expected = {"normalization", "stem_conv", "group1", "group2", "group3", "final_bn",
                "final_relu", "pool", "logits"}
    expected |= {f"group{g}_block{b}" for g in (1, 2, 3) for b in (1, 2)}
    expected |= {"group2_block1_shortcut", "group3_block1_shortcut", "group1_block1_conv1",
                 "group1_block2_conv2"}
    assert expected <= names
    # 16 -> 32 channels changes the shape in the first block of group 1 as well.
    assert "group1_block1_shortcut" in names
    assert "group1_block2_shortcut" not in names
    assert model.get_layer("logits").output.shape[-1] == 10


def test_fully_convolutional_any_size():
    model = build_wrn(10, 1)
    for shape in ((1, 32, 32, 3), (2, 40, 56, 3), (1, 17, 9, 3)):
        out = model(np.random.default_rng(0).uniform(0, 255, shape).astype("float32"))
        assert out.shape == (shape[0], 10)
        assert np.isfinite(np.asarray(out)).all()


def test_normalisation_inside_the_model():
    mean, std = (10.0, 20.0, 30.0), (2.0, 4.0, 8.0)
    model = build_wrn(10, 1, mean=mean, std=std)
    normalised = model.get_layer("normalization")(np.array([[[[12.0, 24.0, 46.0]]]], "float32"))
    np.testing.assert_allclose(np.asarray(normalised).reshape(3), [1.0, 1.0, 2.0], rtol=1e-5)
