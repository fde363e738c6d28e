"""The video captioning pipeline through ``pipeline(...)``: installed package, saved folders, and an exported folder
loaded in a fresh process where the package is not importable."""

from __future__ import annotations

import json
import os
import textwrap

import numpy as np
import pytest
import torch
from helpers.factories import tiny_lxmert_config
from helpers.fresh_process import run_fresh_process
from helpers.processing import make_video, minilm_tokenizer, tiny_frame_model
from helpers.univl_hero_factories import tiny_univl_config
from PIL import Image
from transformers import pipeline

from vlpretrain import FrameFeaturizer, LxmertForImageTextRetrieval, UnivlForCaptioning, VideoLanguageProcessor
from vlpretrain.hub.export import export_model

FEATURE_SIZE = 16  # the pooled channels of the tiny frame model


@pytest.fixture(scope="module")
def tokenizer():
    return minilm_tokenizer()


@pytest.fixture(scope="module")
def processor(tokenizer):
    featurizer = FrameFeaturizer.from_model(tiny_frame_model(), decode_fps=4, clip_seconds=1.0, shortest_edge=32, crop_size=32)
    return VideoLanguageProcessor.from_featurizer(tokenizer, featurizer, max_text_length=12)


@pytest.fixture(scope="module")
def model(tokenizer):
    torch.manual_seed(0)
    config = tiny_univl_config(
        vocab_size=len(tokenizer), frame_feature_size=FEATURE_SIZE, bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id, pad_token_id=tokenizer.pad_token_id, num_beams=2, max_caption_length=6,
    )
    return UnivlForCaptioning(config).eval()


def clip(seed: int, frames: int = 4) -> np.ndarray:
    return np.random.default_rng(seed).random((frames, FEATURE_SIZE), dtype=np.float32)


def reference_captions(model, tokenizer, clips: list[np.ndarray], **generate_kwargs) -> list[str]:
    """Captions straight from ``model.generate`` on the padded clips (what the pipeline must reproduce)."""
    features = VideoLanguageProcessor(tokenizer)(frame_features=clips)
    sequences = model.generate(**features, **generate_kwargs)
    return [text.strip() for text in tokenizer.batch_decode(sequences, skip_special_tokens=True)]


def test_captioning_pipeline_matches_generate_for_single_and_batched_inputs(model, processor, tokenizer, tmp_path):
    captioner = pipeline("vlpretrain-video-captioning", model=model, processor=processor)
    clips = [clip(seed, frames=3 + seed) for seed in range(3)]
    single = captioner({"frame_features": clips[0]})
    assert single == [{"generated_text": reference_captions(model, tokenizer, clips[:1])[0]}]

    batched = captioner([{"frame_features": item} for item in clips], batch_size=2, num_beams=1, max_new_tokens=3)
    expected = reference_captions(model, tokenizer, clips[:2], num_beams=1, max_new_tokens=3)
    expected += reference_captions(model, tokenizer, clips[2:], num_beams=1, max_new_tokens=3)
    assert batched == [[{"generated_text": text}] for text in expected]
    assert all(len(tokenizer.tokenize(row[0]["generated_text"])) <= 3 for row in batched)

    for position, item in enumerate(clips):
        np.save(tmp_path / f"clip{position}.npy", item)
    assert captioner([tmp_path / f"clip{i}.npy" for i in range(3)], num_beams=1, max_new_tokens=3) == batched

    several = captioner({"frame_features": clips[0]}, num_beams=3, num_return_sequences=2)
    assert len(several) == 2 and all(set(item) == {"generated_text"} for item in several)


def test_captioning_pipeline_featurizes_video_files_and_pil_frames(model, processor, tokenizer, tmp_path):
    captioner = pipeline("vlpretrain-video-captioning", model=model, processor=processor)
    video = make_video(tmp_path / "clip.mp4", seconds=2.0)
    features = processor.frame_featurizer.featurize_video(video).features
    assert captioner(str(video)) == [{"generated_text": reference_captions(model, tokenizer, [features])[0]}]

    frames = [Image.fromarray(np.full((40, 48, 3), 30 * index, np.uint8)) for index in range(8)]
    frame_features = processor.frame_featurizer.clip_features(processor.frame_featurizer.pixel_values(frames)).numpy()
    assert frame_features.shape == (2, FEATURE_SIZE)  # 8 frames at 4 fps -> two 1 s clips
    from_frames = captioner([frames, frames[:4]], max_new_tokens=4)
    assert from_frames[0] == [{"generated_text": reference_captions(model, tokenizer, [frame_features], max_new_tokens=4)[0]}]
    assert len(from_frames) == 2


def broken_video_file(folder) -> str:
    path = folder / "broken.mp4"
    path.write_bytes(b"not a video")
    return str(path)


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda captioner, folder: captioner([]), "non-empty list"),
        (lambda captioner, folder: captioner(None), "inputs"),
        (lambda captioner, folder: captioner([{"frame_features": clip(0)}, 3]), r"inputs\[1\]"),
        (lambda captioner, folder: captioner({"frame_features": clip(0)}, temperature_typo=1.0), "unexpected arguments"),
        (lambda captioner, folder: captioner({"frame_features": clip(0)}, batch_size=0), "batch_size"),
        (lambda captioner, folder: captioner({"frame_features": clip(0)}, num_return_sequences=0), "num_return_sequences"),
        (lambda captioner, folder: captioner({"frame_features": np.ones((3, 5), np.float32)}), "feature size 5"),
        (lambda captioner, folder: captioner([{"frame_features": clip(0)}, {"frames": clip(1)}]), "has keys"),
        (lambda captioner, folder: captioner(broken_video_file(folder)), "cannot decode video"),
    ],
)
def test_captioning_pipeline_rejects_bad_input(model, tokenizer, processor, tmp_path, call, message):
    checked = VideoLanguageProcessor.from_featurizer(tokenizer, processor.frame_featurizer, frame_feature_size=FEATURE_SIZE)
    captioner = pipeline("vlpretrain-video-captioning", model=model, processor=checked)
    with pytest.raises(ValueError, match=message):
        call(captioner, tmp_path)


def test_captioning_pipeline_refuses_a_model_without_a_captioning_head(tokenizer):
    retrieval_model = LxmertForImageTextRetrieval(tiny_lxmert_config(vocab_size=len(tokenizer))).eval()
    with pytest.raises(ValueError, match="LxmertForImageTextRetrieval has no video captioning head"):
        pipeline("vlpretrain-video-captioning", model=retrieval_model, processor=VideoLanguageProcessor(tokenizer))
    without_featurizer = pipeline(
        "vlpretrain-video-captioning",
        model=UnivlForCaptioning(tiny_univl_config(vocab_size=len(tokenizer), frame_feature_size=FEATURE_SIZE)).eval(),
        processor=VideoLanguageProcessor(tokenizer),
    )
    frames = [Image.new("RGB", (32, 32))] * 4
    with pytest.raises(ValueError, match=r"inputs\[1\]: PIL frames need a processor with a frame featurizer"):
        without_featurizer([{"frame_features": clip(0)}, frames])


def test_captioning_pipeline_loads_from_a_saved_folder(model, tokenizer, tmp_path):
    model.save_pretrained(tmp_path / "captioner")
    VideoLanguageProcessor(tokenizer).save_pretrained(tmp_path / "captioner")
    captioner = pipeline("vlpretrain-video-captioning", model=str(tmp_path / "captioner"))
    assert type(captioner.model) is UnivlForCaptioning
    assert captioner({"frame_features": clip(4)}) == [{"generated_text": reference_captions(model, tokenizer, [clip(4)])[0]}]


FRESH_PROCESS = textwrap.dedent(
    """
    import sys
    sys.modules["vlpretrain"] = None  # the package must not be importable here
    import json
    import numpy as np
    from transformers import pipeline

    folder, inputs_path, outputs_path = sys.argv[1:4]
    inputs = np.load(inputs_path)
    captioner = pipeline(model=folder, trust_remote_code=True)
    assert captioner.task == "vlpretrain-video-captioning", captioner.task
    assert type(captioner).__module__.startswith("transformers_modules."), type(captioner).__module__
    outputs = {
        "single": captioner({"frame_features": inputs["clip0"]}),
        "batched": captioner([{"frame_features": inputs[f"clip{i}"]} for i in range(3)], num_beams=1, max_new_tokens=3),
    }
    with open(outputs_path, "w") as stream:
        json.dump(outputs, stream)
    """
)


@pytest.mark.slow
def test_exported_captioning_folder_runs_its_pipeline_with_transformers_alone(model, tokenizer, tmp_path):
    model.save_pretrained(tmp_path / "source")
    tokenizer.save_pretrained(tmp_path / "source")  # no processor: export builds one from the tokenizer
    export_model(tmp_path / "source", tmp_path / "exported")
    config = json.loads((tmp_path / "exported" / "config.json").read_text())
    assert config["custom_pipelines"] == {
        "vlpretrain-video-captioning": {"impl": "pipelines_captioning.VideoCaptioningPipeline",
                                        "pt": ["AutoModelForImageTextToText"], "type": "multimodal"}
    }
    assert {"pipelines_captioning.py", "pipelines_inputs.py"} <= set(os.listdir(tmp_path / "exported"))

    clips = [clip(seed, frames=2 + seed) for seed in range(3)]
    np.savez(tmp_path / "inputs.npz", **{f"clip{i}": item for i, item in enumerate(clips)})
    run_fresh_process(
        FRESH_PROCESS, tmp_path, tmp_path / "exported", tmp_path / "inputs.npz", tmp_path / "outputs.json",
    )
    remote = json.loads((tmp_path / "outputs.json").read_text())
    assert remote["single"] == [{"generated_text": reference_captions(model, tokenizer, clips[:1])[0]}]
    expected = reference_captions(model, tokenizer, clips, num_beams=1, max_new_tokens=3)
    assert remote["batched"] == [[{"generated_text": text}] for text in expected]
