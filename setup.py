"""Packaging for open-l2o-tf: a TensorFlow 2 / Keras 3 reimplementation of Open-L2O."""
from setuptools import find_packages, setup

setup(
    name="open-l2o-tf",
    version="0.1.0",
    description=("TF2/Keras reimplementation of the Open-L2O benchmark "
                 "(Learning to Optimize: A Primer and A Benchmark, JMLR 2022)"),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # the command lines live in the checkout's run/ folder (python -m run.lasso there) and
    # install as open_l2o_tf.run, so no top-level package named "run" is installed
    packages=find_packages(include=["open_l2o_tf", "open_l2o_tf.*", "model_based",
                                    "model_based.*", "model_free", "model_free.*"])
    + ["open_l2o_tf.run"],
    package_dir={"open_l2o_tf.run": "run"},
    package_data={"open_l2o_tf": ["reference_numbers.json"],
                  "open_l2o_tf.catalogue": ["index.json", "*.npz", "*.keras"]},
    entry_points={"console_scripts": ["open-l2o = open_l2o_tf.run.cli:main"]},
    install_requires=[
        "tensorflow>=2.16",
        "tensorflow-datasets>=4.9",
        # tensorflow-datasets 4.9.10 imports these (dataset_builder: importlib_resources,
        # etils.epath) without declaring them; without them tfds.load("mnist") fails with
        # ModuleNotFoundError before any download.
        "importlib_resources>=5.0",
        "etils[epath,epy]>=1.5",
        # TF 2.21 no longer depends on TensorBoard; tf.summary needs it.
        "tensorboard>=2.16",
        "numpy>=1.24",
        "absl-py>=1.0",
        "matplotlib>=3.5",
        "pillow>=9.0",
    ],
    extras_require={"test": ["pytest>=7", "pytest-xdist>=3"]},
)
