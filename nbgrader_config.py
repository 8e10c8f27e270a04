"""nbgrader configuration of the course "CNNs part II" (read by `nbgrader ...` run from this folder
and by `python -m course_utils.instructor`, which loads this file and only changes the course root).

Layout: solutions/<lab>/<lab>.ipynb is the source (with solutions and hidden tests), labs/<lab>/ the
generated release; submissions go to submitted/<student>/<lab>/, autograded/ and feedback/ are
made by nbgrader. See docs/instructor.md.
"""

c = get_config()  # noqa: F821 - injected by traitlets when it loads this file

c.CourseDirectory.course_id = "cnn-part2"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "labs"
# Lab folders hold data files or checkpoints only if they are meant for students.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", ".*"]

# --- generating the release: no solution code, no hidden tests, no outputs -----------------------
c.ClearSolutions.begin_solution_delimeter = "### BEGIN SOLUTION"
c.ClearSolutions.end_solution_delimeter = "### END SOLUTION"
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
c.ClearSolutions.enforce_metadata = True  # a solution region outside a solution cell is an error
c.ClearHiddenTests.begin_test_delimeter = "### BEGIN HIDDEN TESTS"
c.ClearHiddenTests.end_test_delimeter = "### END HIDDEN TESTS"
c.ClearHiddenTests.enforce_metadata = True
c.ClearOutput.enabled = True

# --- autograding ----------------------------------------------------------------------------------
# nbgrader sets NBGRADER_EXECUTION while it executes a submission, so course_utils.config.get_mode()
# returns "smoke": a few optimisation steps, a few seconds a cell. The timeout is per cell; a cell
# that runs longer (typically an answer that loops forever) is interrupted, shows CellTimeoutError
# and its tests score 0; the rest of the notebook and the other students are still graded.
c.Execute.timeout = 60
c.Execute.startup_timeout = 120  # the first kernel on a busy 2-core machine can be slow to start
c.Execute.interrupt_on_timeout = True
# A student who deleted a graded cell gets it back (and graded) rather than a crash or a silent 0.
c.OverwriteCells.add_missing_cells = True
# Keep feedback and the gradebook readable when an answer prints in a loop.
c.LimitOutput.max_lines = 200

# --- feedback: the teaching message of each failed test, never the hidden tests' source ---------
# `make grade` runs every submission in a sandbox and replaces nbgrader's Execute step by the
# sandbox's outputs (course_utils.instructor.sandboxed_autograde_config); plain `nbgrader autograde`
# would run students' code unsandboxed on this machine: do not use it on submissions.
from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor  # noqa: E402
from nbgrader.preprocessors import ClearHiddenTests, GetGrades  # noqa: E402

c.GenerateFeedback.preprocessors = [GetGrades, ClearHiddenTests, CSSHTMLHeaderPreprocessor]
