"""Reference application for the test bed (see ../Dockerfile)."""
