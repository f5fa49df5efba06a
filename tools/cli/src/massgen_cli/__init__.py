"""The ``massgen`` command line and the embedded stack: the composition root, above the kernel
(``massgen_es``), the services and the replay tool. Nothing imports this package."""
