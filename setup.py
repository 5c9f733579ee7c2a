"""vsep: installable package; also ships the code to Dataflow workers (--setup_file)."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def requirements(name: str) -> list[str]:
    lines = (HERE / name).read_text().splitlines()
    return [ln.split("#")[0].strip() for ln in lines if ln.split("#")[0].strip() and not ln.startswith("-r")]


setup(
    name="vsep",
    version="0.1.0",
    description="Pull one known speaker's voice out of real recordings (TensorFlow/Keras).",
    long_description=(HERE / "README.md").read_text() if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10,<3.12",
    packages=find_packages(include=["vsep", "vsep.*", "beam_jobs", "beam_jobs.*", "tuner", "tuner.*"]),
    package_data={"vsep": ["models/*/*", "models/*/*/*"]},
    include_package_data=True,
    install_requires=requirements("requirements.txt"),
    extras_require={"dev": requirements("requirements-dev.txt"), "tests": requirements("requirements-dev.txt")},
    entry_points={"console_scripts": ["vsep=vsep.cli:main"]},
)
