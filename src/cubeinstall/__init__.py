"""cubeinstall: install the cube-studio ML platform from one typed site.yaml."""

__version__ = "0.1.0"
