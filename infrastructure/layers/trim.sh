#!/bin/sh
# Trim a built layer's site folder ($1) of what never runs on Lambda (see Makefile):
#   - test suites (numpy.testing, which scipy imports, reads numpy/_core/tests/_natype.py: kept),
#   - bytecode (written at import), Cython/C/C++ sources, headers, static archives, type stubs,
#   - the extension modules' symbol tables (--strip-unneeded keeps what the dynamic loader uses);
#     not the vendored libraries in *.libs/: auditwheel's patchelf moved their load segments, and
#     strip leaves them unloadable ("ELF load command address/offset not page-aligned"),
#   - the subpackages named after the folder ($2...), which nothing Okyaku runs imports.
set -eu
site=$1
shift
cd "$site"
rm -rf bin "$@"
find . -depth -type d -name tests -not -path ./numpy/_core/tests -exec rm -rf {} +
if [ -d numpy/_core/tests ]; then
	find numpy/_core/tests -mindepth 1 -maxdepth 1 -not -name _natype.py -exec rm -rf {} +
fi
find . -depth -type d -name __pycache__ -exec rm -rf {} +
find . -type f \( -name '*.pyx' -o -name '*.pxd' -o -name '*.pxi' -o -name '*.pyi' -o -name '*.c' -o -name '*.cpp' \
	-o -name '*.h' -o -name '*.hpp' -o -name '*.tp' -o -name '*.a' \) -delete
find . -type f -name '*.cpython-*.so' -not -path './*.libs/*' -exec "${STRIP:-strip}" --strip-unneeded {} +
