"""Builds jaxsched's optional CPU kernels (``csrc/fused_cpu.cc``, XLA typed FFI).

Everything else lives in ``pyproject.toml``.  The kernels need a C++20 compiler and the FFI
headers shipped with jaxlib (a build requirement); when either is missing the build goes on
without them and the optimizers run on XLA alone (same numbers, slower on CPU).
"""

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    def build_extension(self, ext: Extension) -> None:
        try:
            import jax.ffi

            ext.include_dirs.append(jax.ffi.include_dir())
            super().build_extension(ext)
        except Exception as err:  # no compiler, no headers: the XLA path still works
            print(f"warning: jaxsched's fused CPU kernels were not built: {err}")


setup(
    ext_modules=[
        Extension(
            "jaxsched.optim._fused_cpu",
            ["csrc/fused_cpu.cc"],
            language="c++",
            # no FMA contraction: torch rounds every operation too.
            extra_compile_args=[
                "-std=c++20",
                "-O3",
                "-fno-math-errno",
                "-ffp-contract=off",
            ],
        )
    ],
    cmdclass={"build_ext": OptionalBuildExt},
)
