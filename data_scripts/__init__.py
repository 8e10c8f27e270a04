"""The command line that fetches the real datasets of full mode: ``python -m data_scripts.download NAME``.

The machinery lives in ``course_utils.data`` (imports flow downward: nothing there depends on this
package): :mod:`course_utils.data.registry` (the table of datasets), :mod:`course_utils.data.fetch`
(one file), :mod:`course_utils.data.extract` (safe extraction) and :mod:`course_utils.data.download`
(:func:`~course_utils.data.download.fetch_dataset`, :func:`~course_utils.data.download.ensure_dataset`).
"""
