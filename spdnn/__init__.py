"""spdnn: the Sparse Deep Neural Network Graph Challenge as a reproducible workflow."""

try:  # written at build/install time by setuptools-scm from the git tag and commit (pyproject.toml)
    from ._version import __version__
except ImportError:  # a tree that was never built or installed: the installed metadata, if any
    import importlib.metadata as _metadata

    try:
        __version__ = _metadata.version("spdnn")
    except _metadata.PackageNotFoundError:
        __version__ = "0+unknown"
    del _metadata
