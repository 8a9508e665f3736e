"""The classroom: practice workbooks, grading, evaluation of student values, slip diagnosis."""
