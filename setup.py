# Builds the Python package `tokenprune` (python/tokenprune) and its pybind11 extension tokenprune._core from the
# header-only library in include/. Build requirements, all from Debian 12 (no package index needed):
#   apt-get install -y pybind11-dev python3-pybind11 libdlpack-dev libeigen3-dev python3-setuptools python3-wheel
#   pip install --no-build-isolation .
# TOKENPRUNE_CXXFLAGS adds compiler flags (e.g. "-march=native"); the default is -O2 with no -march, so the wheel
# is portable and the library's own run-time ISA dispatch picks AVX2/AVX-512 kernels.
import os
import shlex

from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import setup

here = os.path.dirname(os.path.abspath(__file__))


def version():
    text = open(os.path.join(here, "include", "tokenprune", "tokenprune.hpp")).read()
    parts = {}
    for key in ("Major", "Minor", "Patch"):
        marker = "kVersion" + key + " = "
        parts[key] = text.split(marker, 1)[1].split(";", 1)[0].strip()
    return "{Major}.{Minor}.{Patch}".format(**parts)


eigen = os.environ.get("EIGEN3_INCLUDE_DIR", "/usr/include/eigen3")
extra = ["-O2", "-fvisibility=hidden"] + shlex.split(os.environ.get("TOKENPRUNE_CXXFLAGS", ""))

ext = Pybind11Extension(
    "tokenprune._core",
    ["python/src/module.cpp"],
    include_dirs=[os.path.join(here, "include"), eigen],
    cxx_std=20,
    extra_compile_args=extra,
)

setup(
    name="tokenprune",
    version=version(),
    description="Training-free visual-token pruning for multimodal LLMs (G-Prune, FoPru, ...), read in place",
    package_dir={"": "python"},
    packages=["tokenprune"],
    ext_modules=[ext],
    cmdclass={"build_ext": build_ext},
    python_requires=">=3.9",
    install_requires=["numpy"],
    zip_safe=False,
    options={"build": {"build_base": os.path.join("build", "python")}},
)
