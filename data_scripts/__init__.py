"""Fetch the real datasets of full mode: ``python -m data_scripts.download NAME [--root DIR]``.

* :mod:`data_scripts.registry` - the one table of datasets: files, URLs with mirrors, sha256, size,
  licence and citation.
* :mod:`data_scripts.fetch` - one file: mirrors, resume (HTTP Range), sha256, atomic rename.
* :mod:`data_scripts.extract` - safe extraction of tar and zip archives.
* :mod:`data_scripts.download` - the command line and :func:`~data_scripts.download.fetch_dataset`.
"""
