"""Views of the library: the command line and the figures."""
