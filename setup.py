"""Builds the compiled coverage kernel against the htslib that pysam ships.

The extension (bamstore/engine/) links to pysam's libchtslib by file name and finds it at run
time through an rpath to the `pysam` package beside `bamstore` (installed layout) or pysam's
build-time directory (in-place builds). It is the only coverage kernel: a failed compile fails
the install. The SHA-256 of the .pyx it was built from is compiled in (`SOURCE_SHA256`), so a
checkout whose .pyx changed after the build is told to rebuild instead of failing inside the
kernel.
"""

import hashlib
import os

from setuptools import setup


def coverage_extension():
    import pysam
    from Cython.Build import cythonize
    from setuptools import Extension

    htslib = next(p for p in pysam.get_libraries() if os.path.basename(p).startswith("libchtslib"))
    pysam_dir = os.path.dirname(htslib)
    with open("bamstore/engine/_coverage.pyx", "rb") as source:
        source_sha256 = hashlib.sha256(source.read()).hexdigest()
    ext = Extension(
        "bamstore.engine._coverage",
        ["bamstore/engine/_coverage.pyx"],
        include_dirs=pysam.get_include(),
        library_dirs=[pysam_dir],
        libraries=[":" + os.path.basename(htslib)],
        runtime_library_dirs=["$ORIGIN/../../pysam", pysam_dir],
        extra_compile_args=["-O3"],
        define_macros=[*pysam.get_defines(), ("BAMSTORE_PYX_SHA256", f'"{source_sha256}"')],
    )
    return cythonize(
        [ext, *zstd_extensions()], compiler_directives={"language_level": "3"}, quiet=True
    )


def zstd_extensions():
    """The query layer's block reader and the format layer's blosc frame encoder: they link
    libzstd by file name, so the runtime library (libzstd.so.1, on every Linux system that has
    zstd at all) is all they need, no headers."""
    import ctypes.util
    from setuptools import Extension

    if ctypes.util.find_library("zstd") is None:
        raise RuntimeError(
            "bamstore needs the zstd library (libzstd.so.1): install it, e.g. "
            "`apt-get install libzstd1` or `dnf install libzstd`"
        )
    reader = Extension(
        "bamstore.query._chunkread",
        ["bamstore/query/_chunkread.pyx"],
        libraries=[":libzstd.so.1"],
        # OpenMP: the rows of one read are split between threads (prange)
        extra_compile_args=["-O3", "-fopenmp"],
        extra_link_args=["-fopenmp"],
    )
    encoder = Extension(
        "bamstore.layout._bloscframe",
        ["bamstore/layout/_bloscframe.pyx"],
        libraries=[":libzstd.so.1"],
        extra_compile_args=["-O3"],
    )
    return [reader, encoder]


setup(ext_modules=coverage_extension())
