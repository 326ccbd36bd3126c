"""Builds jaxsched's optional CPU kernels (``csrc/fused_cpu.cc``, XLA typed FFI).

Everything else lives in ``pyproject.toml``.  The kernels are a plain shared library
(``jaxsched/optim/libjaxsched_kernels.so``, ``.dylib``, ``.dll``), loaded with ctypes and
registered with XLA: it uses no Python API, so the wheel is tagged ``py3-none-<platform>`` and
serves every CPython.  No host detection at build time: the AVX2 loops are chosen at run time
(``__builtin_cpu_supports``), so a wheel built anywhere runs on any x86-64.  The kernels need a
C++20 compiler and the FFI headers shipped with jaxlib (a build requirement); when either is
missing the build goes on without them, and at run time jaxsched warns once and runs the
optimizers on XLA alone (same numbers, slower on CPU).
"""

import os
import sys

from setuptools import Extension, setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.build_ext import build_ext

LIBRARY = "libjaxsched_kernels" + {"darwin": ".dylib", "win32": ".dll"}.get(sys.platform, ".so")


class OptionalKernelLibrary(build_ext):
    """Builds the kernels as a plain shared library, or says why not and goes on."""

    def get_ext_filename(self, fullname: str) -> str:
        # called with the full dotted name and with its last part alone
        if fullname in ("jaxsched.optim.kernels", "kernels"):
            *package, _ = fullname.split(".")
            return os.path.join(*package, LIBRARY)  # no CPython ABI suffix: not a module
        return super().get_ext_filename(fullname)

    def get_export_symbols(self, ext: Extension) -> list[str]:
        return ext.export_symbols  # no PyInit_ function: it is not a Python module

    def build_extension(self, ext: Extension) -> None:
        try:
            import jax.ffi

            ext.include_dirs.append(jax.ffi.include_dir())
            super().build_extension(ext)
        except Exception as err:  # no compiler, no headers: the XLA path still works
            print(f"warning: jaxsched's CPU kernels were not built: {err}", file=sys.stderr)


class PlatformWheel(bdist_wheel):
    """Any Python 3, no Python ABI, this platform (the library is native code)."""

    def get_tag(self) -> tuple[str, str, str]:
        _, _, platform = super().get_tag()
        return "py3", "none", platform


setup(
    ext_modules=[
        Extension(
            "jaxsched.optim.kernels",
            ["csrc/fused_cpu.cc"],
            language="c++",
            # no FMA contraction: torch rounds every operation too.
            extra_compile_args=[
                "-std=c++20",
                "-O3",
                "-fno-math-errno",
                "-ffp-contract=off",
                "-g0",  # no debug info: 7 MB -> a few hundred kB
            ],
        )
    ],
    cmdclass={"build_ext": OptionalKernelLibrary, "bdist_wheel": PlatformWheel},
)
