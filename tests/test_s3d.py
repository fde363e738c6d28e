"""S3D (MIL-NCE HowTo100M): release-layout conversion, a functional reference of the release's forward pass,
save / load and remote code, batch independence and input checks."""

from __future__ import annotations

import os
import textwrap

import pytest
import torch
import torch.nn.functional as F
import transformers
from helpers.fresh_process import run_fresh_process
from helpers.s3d_factories import BLOCKS, TINY_FEATURE_SIZE, converted_tiny_s3d, release_s3d_state_dict, tiny_s3d_config
from safetensors.torch import load_file, save_file

from vlpretrain.cli import main as cli_main
from vlpretrain.configuration.s3d import S3DConfig
from vlpretrain.modeling.s3d import S3DModel, s3d_output_size
from vlpretrain.processing.featurizer_models import file_sha256

pytestmark = pytest.mark.usefixtures("one_thread")


def reference_forward(state: dict[str, torch.Tensor], video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The release's forward pass written out with functional ops from its documented facts: 2x2x2 space-to-depth in
    (dt, dh, dw, c) channel order, conv1 (2, 4, 4) padded (1, 2, 2) then the first step / row / column dropped,
    BatchNorm (eps 1e-5) + ReLU units, separable = 1xkxk then kx1x1, zero-padded ceil-mode stage pools, self-gating."""

    def unit(prefix: str, x: torch.Tensor, padding=0, separable: bool = False) -> torch.Tensor:
        def conv_bn(conv: str, bn: str, x: torch.Tensor, pad) -> torch.Tensor:
            x = F.conv3d(x, state[f"{prefix}.{conv}.weight"], padding=pad)
            x = F.batch_norm(x, state[f"{prefix}.{bn}.running_mean"], state[f"{prefix}.{bn}.running_var"],
                             state[f"{prefix}.{bn}.weight"], state[f"{prefix}.{bn}.bias"], eps=1e-5)
            return x.clamp(min=0)

        if separable:
            return conv_bn("conv2", "bn2", conv_bn("conv1", "bn1", x, (0, padding, padding)), (padding, 0, 0))
        return conv_bn("conv1", "bn1", x, padding)

    def gate(prefix: str, x: torch.Tensor) -> torch.Tensor:
        weights = torch.sigmoid(F.linear(x.mean((2, 3, 4)), state[f"{prefix}.fc.weight"], state[f"{prefix}.fc.bias"]))
        return x * weights[:, :, None, None, None]

    def pool(x: torch.Tensor, kernel, stride) -> torch.Tensor:
        after = [max(k - s, 0) for k, s in zip(kernel, stride)]  # all pads here are 0 or 1: the pixel goes at the end
        x = F.pad(x, (0, after[2], 0, after[1], 0, after[0]))
        return F.max_pool3d(x, kernel, stride, ceil_mode=True)

    b, c, t, h, w = video.shape
    x = video.reshape(b, c, t // 2, 2, h // 2, 2, w // 2, 2).permute(0, 3, 5, 7, 1, 2, 4, 6).reshape(b, 8 * c, t // 2, h // 2, w // 2)
    x = unit("conv1", x, (1, 2, 2))[:, :, 1:, 1:, 1:]
    x = pool(x, (1, 3, 3), (1, 2, 2))
    x = gate("gating", unit("conv_2c", unit("conv_2b", x), 1, separable=True))
    x = pool(x, (1, 3, 3), (1, 2, 2))
    for block in BLOCKS:
        if block == "mixed_4b":
            x = pool(x, (3, 3, 3), (2, 2, 2))
        if block == "mixed_5b":
            x = pool(x, (2, 2, 2), (2, 2, 2))
        branches = [
            unit(f"{block}.conv_b0", x),
            unit(f"{block}.conv_b1_b", unit(f"{block}.conv_b1_a", x), 1, separable=True),
            unit(f"{block}.conv_b2_b", unit(f"{block}.conv_b2_a", x), 1, separable=True),
            unit(f"{block}.conv_b3_b", F.max_pool3d(x, 3, 1, 1)),
        ]
        x = torch.cat([gate(f"{block}.gating_b{i}", branch) for i, branch in enumerate(branches)], dim=1)
    pooled = x.mean((2, 3, 4))
    return pooled, F.linear(pooled, state["fc.weight"], state["fc.bias"])


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("s3d")
    return folder, converted_tiny_s3d(folder)


def test_cli_conversion_reproduces_the_reference_forward_pass(tmp_path):
    state = release_s3d_state_dict(num_batches_tracked=True)
    torch.save({f"module.{key}": value for key, value in state.items()}, tmp_path / "s3d_howto100m.pth")
    assert cli_main(["convert", "--from", "s3d-howto100m", str(tmp_path / "s3d_howto100m.pth"), "--output-dir", str(tmp_path / "out")]) == 0
    model = transformers.AutoModel.from_pretrained(tmp_path / "out").eval()
    assert type(model) is S3DModel and model.config.inception_widths == tiny_s3d_config().inception_widths
    assert model.config.feature_size == TINY_FEATURE_SIZE and model.config.use_text_module
    assert model.config.converted_from == {"format": "s3d-howto100m", "file": "s3d_howto100m.pth",
                                           "sha256": file_sha256(tmp_path / "s3d_howto100m.pth")}
    video = torch.rand(2, 3, 16, 64, 80, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        output = model(pixel_values_videos=video)
    pooled, embedding = reference_forward(state, video)
    assert output.last_hidden_state.shape == (2, TINY_FEATURE_SIZE, 2, 2, 3)
    torch.testing.assert_close(output.pooler_output, pooled, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(output.video_embeds, embedding, rtol=1e-5, atol=1e-5)
    ids = torch.tensor([[3, 7, 0, 0], [1, 2, 39, 5]])
    words = F.relu(F.linear(state["text_module.word_embd.weight"][ids], state["text_module.fc1.weight"], state["text_module.fc1.bias"]))
    expected = F.linear(words.max(dim=1).values, state["text_module.fc2.weight"], state["text_module.fc2.bias"])
    torch.testing.assert_close(model.get_text_features(ids), expected, rtol=1e-5, atol=1e-5)


def test_converter_takes_the_video_tower_alone_and_lists_mismatching_keys(tmp_path):
    folder = converted_tiny_s3d(tmp_path, text=None)
    assert S3DModel.from_pretrained(folder).text_module is None
    state = release_s3d_state_dict()
    del state["mixed_4c.conv_b0.bn1.running_var"]
    state["mixed_4c.conv_b0.extra.weight"] = torch.zeros(1)
    state["mixed_5c.gating_b3.fc.bias"] = torch.zeros(3)
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(ValueError) as error:
        cli_main(["convert", "--from", "s3d-howto100m", str(tmp_path / "broken.pth"), "--output-dir", str(tmp_path / "bad")])
    message = str(error.value)
    assert "broken.pth" in message and "mixed_4c.conv_b0.bn1.running_var" in message
    assert "mixed_4c.conv_b0.extra.weight" in message and "mixed_5c.gating_b3.fc.bias (3,) (expected (8,))" in message
    assert not (tmp_path / "bad").exists()
    torch.save({"net": {"weights": torch.zeros(1)}, "optimizer": object.__new__(S3DConfig)}, tmp_path / "pickled.pth")
    with pytest.raises(ValueError, match="refusing to unpickle"):
        cli_main(["convert", "--from", "s3d-howto100m", str(tmp_path / "pickled.pth"), "--output-dir", str(tmp_path / "bad")])


def test_space_to_depth_order_and_output_sizes():
    video = torch.zeros(1, 3, 4, 6, 6)
    video[0, 2, 1, 4, 3] = 1.0  # channel 2, frame 1 (dt 1), row 4 (dh 0), column 3 (dw 1) -> block (0, 2, 1)
    blocks = S3DModel.space_to_depth(video)
    assert blocks.shape == (1, 24, 2, 3, 3) and blocks[0, ((1 * 2 + 0) * 2 + 1) * 3 + 2, 0, 2, 1] == 1.0 and blocks.sum() == 1.0
    assert s3d_output_size(32, 224, 224) == (4, 7, 7) and s3d_output_size(16, 224, 224) == (2, 7, 7)
    assert s3d_output_size(16, 256, 200) == (2, 8, 7) and 0 in s3d_output_size(4, 224, 224)


def test_save_load_batch_independence_and_base_size():
    with torch.device("meta"):
        release = S3DModel(S3DConfig())
    assert round(sum(p.numel() for p in release.parameters()) / 1e6, 1) == 31.2
    assert release.config.feature_size == 1024 and release.fc.out_features == 512
    torch.manual_seed(0)
    model = S3DModel(tiny_s3d_config()).eval()
    video = torch.rand(3, 3, 8, 48, 48)
    with torch.no_grad():
        batched = model(video).pooler_output
        alone = torch.cat([model(video[i : i + 1]).pooler_output for i in range(3)])
    torch.testing.assert_close(batched, alone, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_saved_folder_loads_as_remote_code_in_a_fresh_process(converted, tmp_path):
    _, converted_folder = converted
    model = S3DModel.from_pretrained(converted_folder).eval()
    folder = tmp_path / "remote"
    model.save_pretrained(folder, remote_code=True)
    assert {"modeling_s3d.py", "configuration_s3d.py"} <= set(os.listdir(folder))
    video = torch.rand(2, 3, 16, 64, 64)
    save_file({"video": video}, tmp_path / "inputs.safetensors")
    script = textwrap.dedent(
        """
        import sys
        sys.modules["vlpretrain"] = None
        import torch, transformers
        from safetensors.torch import load_file, save_file

        folder, inputs_path, outputs_path = sys.argv[1:4]
        model = transformers.AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
        assert type(model).__module__.startswith("transformers_modules."), type(model).__module__
        with torch.no_grad():
            output = model(pixel_values_videos=load_file(inputs_path)["video"])
        save_file({"pooled": output.pooler_output, "embeds": output.video_embeds}, outputs_path)
        """
    )
    run_fresh_process(script, tmp_path, folder, tmp_path / "inputs.safetensors", tmp_path / "outputs.safetensors")
    remote = load_file(tmp_path / "outputs.safetensors")
    with torch.no_grad():
        local = model(pixel_values_videos=video)
    torch.testing.assert_close(remote["pooled"], local.pooler_output)
    torch.testing.assert_close(remote["embeds"], local.video_embeds)


@pytest.mark.parametrize(
    "video,message",
    [
        (torch.rand(3, 16, 64, 64), r"\(batch, channels, frames, height, width\)"),
        (torch.rand(1, 16, 3, 64, 64), "expected 3 channels"),
        (torch.rand(1, 3, 15, 64, 64), "must be even"),
        (torch.rand(1, 3, 4, 64, 64), "too small"),
        (torch.zeros(1, 3, 16, 64, 64, dtype=torch.uint8), "floating point"),
    ],
)
def test_bad_video_tensors_raise_before_compute(video, message):
    with pytest.raises(ValueError, match=message):
        S3DModel(tiny_s3d_config())(pixel_values_videos=video)


def test_bad_text_ids_raise():
    model = S3DModel(tiny_s3d_config())
    with pytest.raises(ValueError, match=r"word ids must lie in \[0, 40\)"):
        model.get_text_features(torch.tensor([[1, 40]]))
    with pytest.raises(ValueError, match="without the text tower"):
        S3DModel(tiny_s3d_config(use_text_module=False)).get_text_features(torch.tensor([[1]]))
